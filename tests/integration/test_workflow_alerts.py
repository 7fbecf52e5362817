"""The status workflow and its alerts through the hub: a ticket walks from the CRM through the MES and the WMS
to the courier; a resolve before the courier confirms delivery is refused, shown in the history with its
author, written back to the CRM, and alerted to a DingTalk robot (a local receiver checking the signature);
after the courier's delivery the same resolve is accepted. A ticket left in `new` raises one alert and,
later, one escalation, each recorded in its history, whatever how often the check runs. The service
metrics count all of it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from hub.bootstrap import Hub, bootstrap
from hub.config import load_settings
from hub.http.app import create_app
from hub.usecases.alerting import due_sends, raise_dwell_breaches, send_one
from hub.usecases.deliver import deliver_once
from hub.usecases.ingest import accept_event
from hub.usecases.process import Processed, process_event
from hub.usecases.stats import service_stats
from tests.conftest import Clock
from tests.fakes import RecordingWriter
from tests.robots import DT_SECRET, DT_TOKEN, Twin
from tests.serving import served

T0 = datetime(2026, 2, 13, 9, 0, tzinfo=UTC)
TOKEN = "test-token-not-a-secret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def robot() -> Iterator[tuple[Twin, str]]:
    twin = Twin()
    with served(twin.app()) as base:
        yield twin, base


@pytest.fixture
def hub(engine: Engine, clock: Clock, tmp_path: Path) -> Hub:
    config = tmp_path / "tickethub.toml"
    config.write_text('[alerts]\nconsole_url = "https://hub.example.com"\n'
                      '[alerts.channels.ops]\ntype = "dingtalk"\nurl_env = "DT_URL"\nsecret_env = "DT_SECRET"\n'
                      'language = "zh"\n', encoding="utf-8")
    return bootstrap(load_settings(config, environ={}), engine=engine, clock=clock)


class Systems:
    """The five default systems as the hub sees them: events in, deliveries out to recording writers."""

    def __init__(self, hub: Hub):
        self.hub = hub
        self.writers = {"erp": RecordingWriter("erp", "SO-1"), "mes": RecordingWriter("mes", "WO-1"),
                        "wms": RecordingWriter("wms", "SHP-1"), "courier": RecordingWriter("courier", "shunfeng:SF1"),
                        "crm": RecordingWriter("crm", "CASE-1")}
        self.count = 0

    def send(self, system: str, local_id: str, minutes: float, fields: dict[str, Any],
             author: str = "someone") -> Processed:
        self.count += 1
        event_id, _ = accept_event(self.hub, system, f"e{self.count}", {
            "local_id": local_id, "modified_at": (T0 + timedelta(minutes=minutes)).isoformat(), "author": author,
            "fields": fields})
        processed = process_event(self.hub, event_id)
        assert processed.state == "processed", processed
        for delivery_id in processed.deliveries:
            self.deliver(delivery_id)
        return processed

    def deliver(self, delivery_id: int) -> None:
        outcome = deliver_once(self.hub, delivery_id, lambda system: self.writers[system])  # type: ignore[arg-type,return-value]
        assert outcome.kind == "delivered"
        for follow_up in outcome.follow_ups:
            self.deliver(follow_up)


def status_of(hub: Hub, ticket_id: str) -> str:
    with hub.store.unit_of_work() as uow:
        return str(uow.tickets.get(ticket_id).fields["status"].value)


def test_resolve_needs_the_couriers_delivery_and_a_refusal_is_recorded_written_back_and_alerted(
        hub: Hub, robot: tuple[Twin, str]) -> None:
    twin, base = robot
    for seen in twin.seen.values():
        seen.clear()
    systems = Systems(hub)
    ticket_id = systems.send("crm", "CASE-1", 0, {"contact": {"name": "Ada"}, "case": {
        "status": "New", "serial_number": "PX-1", "description": "Crank jams"}}).ticket_id
    assert ticket_id is not None
    systems.send("mes", "WO-1", 10, {"production": {"state": "repair"}})
    systems.send("mes", "WO-1", 20, {"production": {"state": "done"}})
    systems.send("wms", "SHP-1", 30, {"shipment": {"carrier": "SF Express", "tracking_number": "SF1",
                                                   "state": "shipped"}})
    assert status_of(hub, ticket_id) == "shipped"
    # the courier was written the waybill and the carrier's Kuaidi100 code: that write is its subscription
    assert {"num": "SF1", "com": "shunfeng"}.items() <= dict(systems.writers["courier"].writes[-1].fields).items()

    crm_writes = len(systems.writers["crm"].writes)
    systems.send("crm", "CASE-1", 40, {"case": {"status": "Resolved"}}, author="agent@example.com")
    assert status_of(hub, ticket_id) == "shipped"
    written_back = systems.writers["crm"].writes[crm_writes:]
    assert [w.fields.get("case.status") for w in written_back] == ["Shipped"]

    api = TestClient(create_app(hub, TOKEN))
    history = api.get(f"/tickets/{ticket_id}/history", headers=AUTH).json()["entries"]
    [refused] = [e for e in history if e["outcome"] == "no_evidence"]
    assert refused["author"] == "agent@example.com" and refused["new_value"] == "resolved"
    assert "shipment.status" in refused["reason"] and "courier" in refused["reason"]

    sends = due_sends(hub)
    assert len(sends) == 1 and sends[0][1] == "ops"
    env = {"DT_URL": f"{base}/robot/send?access_token={DT_TOKEN}", "DT_SECRET": DT_SECRET}
    with httpx.Client() as client:
        assert send_one(hub, *sends[0], client, environ=env).kind == "sent"
        assert send_one(hub, *sends[0], client, environ=env).kind == "gone"  # sent once, never twice
    [message] = twin.seen["dingtalk"]
    text = message["markdown"]["text"]
    assert ticket_id in text and "agent@example.com" in text
    assert f"https://hub.example.com/tickets/{ticket_id}" in text
    assert due_sends(hub) == []

    systems.send("courier", "shunfeng:SF1", 50, {"state": "3", "delivered_at": (T0 + timedelta(minutes=50)).isoformat(),
                                                 "ticket_status": "delivered"}, author="kuaidi100")
    assert status_of(hub, ticket_id) == "delivered"
    systems.send("crm", "CASE-1", 55, {"case": {"status": "Resolved"}}, author="agent@example.com")
    assert status_of(hub, ticket_id) == "resolved"

    stats = service_stats(hub, T0 - timedelta(days=1))
    assert stats.status_refused == {"no_evidence": {"crm": 1}}
    assert stats.status_accepted == 6  # new, in_repair, ready_to_ship, shipped, delivered, resolved
    assert stats.evidence_share == pytest.approx(6 / 7)
    assert set(stats.first_attempt_success) >= {"erp", "mes", "wms", "courier"}
    assert stats.flow_seconds.count == 1 and stats.flow_waiting == 0


def test_a_ticket_left_in_new_raises_one_alert_then_one_escalation(hub: Hub, clock: Clock) -> None:
    systems = Systems(hub)
    ticket_id = systems.send("crm", "CASE-2", 0, {"case": {"status": "New"}}).ticket_id
    clock.now = T0 + timedelta(hours=1, minutes=59)
    assert raise_dwell_breaches(hub, clock()) == []
    clock.now = T0 + timedelta(hours=2, minutes=1)
    assert len(raise_dwell_breaches(hub, clock())) == 1
    clock.now = T0 + timedelta(hours=5)
    assert raise_dwell_breaches(hub, clock()) == []  # the same stay in `new`: no second alert
    clock.now = T0 + timedelta(hours=8, minutes=1)
    assert len(raise_dwell_breaches(hub, clock())) == 1  # the escalation
    assert raise_dwell_breaches(hub, clock()) == []
    with hub.store.unit_of_work() as uow:
        notes = [(h.outcome, h.reason) for h in uow.tickets.history(ticket_id) if h.system == "tickethub"]
        kinds = sorted(a["kind"] for a in uow.alerts.recent())
    assert [outcome for outcome, _ in notes] == ["dwell", "dwell_escalation"]
    assert "past its dwell limit of 2 h" in notes[0][1] and "escalation limit of 8 h" in notes[1][1]
    assert kinds == ["dwell", "dwell_escalation"]

    systems.send("crm", "CASE-2", 8 * 60 + 5, {"case": {"status": "Assigned"}})
    clock.now = T0 + timedelta(hours=20)
    [alert_id] = raise_dwell_breaches(hub, clock())  # a new stay, in `assigned`: past its 4 h, not its 24 h
    with hub.store.unit_of_work() as uow:
        assert uow.alerts.get(alert_id)["status"] == "assigned"  # type: ignore[index]
