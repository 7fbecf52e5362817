"""The status workflow end to end, as deployed: `tickethub up` (embedded), the courier on Kuaidi100's sandbox
twin served on a loopback port, the CRM, ERP, MES and WMS as local receivers, and a DingTalk robot (a local
receiver that checks DingTalk's signature as DingTalk does).

A ticket goes from the CRM through the MES and the WMS; the WMS's waybill subscribes the parcel with the
courier. "Resolved" from the CRM before the courier confirms delivery is refused, written back to the CRM
and alerted; a forged courier push is 401 and changes nothing; once the courier twin pushes a signed
delivery the same "resolved" is accepted. A ticket left in `new` past its limit raises exactly one alert and,
later, one escalation.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from connectors.kuaidi100.push import push_body
from connectors.kuaidi100.twin import Kuaidi100Twin
from hub.core.signing import sign_standard
from mappings import DEFAULT_DIR
from tests.e2e.harness import OUT_SECRET, HubProcesses, Receiver, wait_until
from tests.robots import DT_SECRET, DT_TOKEN, Twin
from tests.serving import served

pytestmark = pytest.mark.e2e

KEY, CUSTOMER, SALT = "k100-key-0123456789", "K100CUSTOMER0123456789ABCDEF", "k100-salt-abcdef0123456789"
COM, NUM = "shunfeng", "SF1234567890"
FORM = "application/x-www-form-urlencoded;charset=UTF-8"
NEW_DWELL, NEW_ESCALATE = 6, 14  # seconds, for this test's workflow


@pytest.fixture
def robot() -> Iterator[tuple[Twin, str]]:
    twin = Twin()
    with served(twin.app()) as base:
        yield twin, base


@pytest.fixture
def courier() -> Iterator[tuple[Kuaidi100Twin, str]]:
    twin = Kuaidi100Twin(KEY, CUSTOMER)
    with served(twin.app) as base:
        yield twin, base
    twin.close()


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _mappings(tmp_path: Path) -> Path:
    """The shipped mappings and workflow, with `new` limits short enough to wait for."""
    directory = tmp_path / "mappings"
    shutil.copytree(DEFAULT_DIR, directory, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    workflow = (directory / "workflow.toml").read_text(encoding="utf-8")
    workflow = workflow.replace('[states.new]\ndwell = "2h"\nescalate = "8h"',
                                f'[states.new]\ndwell = "{NEW_DWELL}s"\nescalate = "{NEW_ESCALATE}s"')
    assert f'dwell = "{NEW_DWELL}s"' in workflow
    (directory / "workflow.toml").write_text(workflow, encoding="utf-8")
    return directory


@pytest.fixture
def hub(tmp_path: Path, robot: tuple[Twin, str], courier: tuple[Kuaidi100Twin, str],
        monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[HubProcesses, dict[str, Receiver]]]:
    receivers = {name: Receiver(name).start() for name in ("crm", "erp", "mes", "wms")}
    hub = HubProcesses(tmp_path, f"sqlite:///{tmp_path / 'hub.db'}", None, receivers)
    lines = ["[hub]", f'database_url = "{hub.database_url}"', f'data_dir = "{tmp_path / "var"}"',
             f'mappings_dir = "{_mappings(tmp_path)}"', "",
             "[delivery]", "backoff_base_seconds = 0.3", "backoff_cap_seconds = 2.0", "lease_seconds = 6.0",
             "redispatch_after_seconds = 3.0", "sweep_interval_seconds = 0.5", "",
             "[workflow]", "dwell_check_seconds = 0.5", "",
             "[alerts]", f'console_url = "{hub.base}"',
             "[alerts.channels.ops]", 'type = "dingtalk"', 'url_env = "E2E_DT_URL"', 'secret_env = "E2E_DT_SECRET"', "",
             "[systems.crm]", "origin = true", f'base_url = "{receivers["crm"].url}"',
             'webhook_secrets_env = "E2E_CRM_SECRETS"']
    for name in ("erp", "mes", "wms"):
        lines += ["", f"[systems.{name}]", f'base_url = "{receivers[name].url}"',
                  'webhook_secrets_env = "E2E_OUT_SECRET"']
    lines += ["", "[systems.courier]", 'type = "kuaidi100"', f'base_url = "{courier[1]}"',
              'credentials_env = "E2E_K100_KEY"', 'customer_env = "E2E_K100_CUSTOMER"',
              'webhook_secrets_env = "E2E_K100_SALT"', f'callback_url = "{hub.base}/webhooks/courier"']
    hub.config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    monkeypatch.setenv("E2E_DT_URL", f"{robot[1]}/robot/send?access_token={DT_TOKEN}")
    monkeypatch.setenv("E2E_DT_SECRET", DT_SECRET)
    monkeypatch.setenv("E2E_K100_KEY", KEY)
    monkeypatch.setenv("E2E_K100_CUSTOMER", CUSTOMER)
    monkeypatch.setenv("E2E_K100_SALT", SALT)
    checked = hub.run_cli("mappings", "check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    hub.start("up")
    try:
        yield hub, receivers
    finally:
        hub.stop()
        for receiver in receivers.values():
            receiver.stop()


def _send(hub: HubProcesses, system: str, local_id: str, fields: dict[str, Any], author: str = "someone") -> None:
    """A system's signed change notice, stamped now."""
    if system == "crm":
        answer = hub.send(f"{system}-{time.monotonic_ns()}", {"local_id": local_id, "modified_at": _now(),
                                                              "author": author, "fields": fields})
    else:
        msg_id, stamp = f"{system}-{time.monotonic_ns()}", int(time.time())
        body = json.dumps({"local_id": local_id, "modified_at": _now(), "author": author, "fields": fields}).encode()
        answer = hub.http.post(f"{hub.base}/webhooks/{system}", content=body, headers={
            "content-type": "application/json", "webhook-id": msg_id, "webhook-timestamp": str(stamp),
            "webhook-signature": sign_standard(OUT_SECRET, msg_id, stamp, body)})
    assert answer.status_code == 202, answer.text


def _ticket(hub: HubProcesses, ticket_id: str) -> dict[str, Any]:
    return dict(hub.get(f"/tickets/{ticket_id}").json())


def _status(hub: HubProcesses, ticket_id: str) -> str | None:
    return _ticket(hub, ticket_id).get("status")


def _linked(hub: HubProcesses, system: str, local_id: str) -> str | None:
    found = hub.get("/tickets", system=system, local_id=local_id)
    return found.json()["ticket_id"] if found.status_code == 200 else None


def _messages_about(robot: Twin, ticket_id: str) -> list[str]:
    return [m["markdown"]["text"] for m in robot.seen["dingtalk"] if ticket_id in m["markdown"]["text"]]


def test_resolve_waits_for_the_couriers_signed_delivery_and_a_stuck_ticket_is_alerted_once(
        hub: tuple[HubProcesses, dict[str, Receiver]], robot: tuple[Twin, str],
        courier: tuple[Kuaidi100Twin, str]) -> None:
    processes, receivers = hub
    twin, parcel = robot[0], courier[0]
    parcel.script(COM, NUM, [("1", "【深圳】顺丰速运已收取快件"), ("0", "快件在【深圳转运中心】完成分拣"),
                             ("5", "快件交给张三，正在派送途中"), ("3", "已签收，签收人凭取货码签收")])
    try:
        # a ticket nobody touches after it is opened: its `new` limit passes while the other one travels
        _send(processes, "crm", "CASE-2", {"case": {"status": "New"}})  # written to the ERP only
        stuck = wait_until(lambda: _linked(processes, "crm", "CASE-2"), what="the second ticket")

        _send(processes, "crm", "CASE-1", {"contact": {"name": "Ada", "phone": "+86 138 0000 0000"}, "case": {
            "status": "New", "serial_number": "PX-1", "description": "Crank jams"}}, author="agent@example.com")
        ticket = wait_until(lambda: _linked(processes, "crm", "CASE-1"), what="the ticket")
        wait_until(lambda: _linked(processes, "mes", "MES-1") and _linked(processes, "wms", "WMS-1"),
                   what="the MES and WMS linked by their first writes")
        _send(processes, "mes", "MES-1", {"production": {"state": "repair"}}, author="shopfloor-lead")
        _send(processes, "mes", "MES-1", {"production": {"state": "done"}}, author="shopfloor-lead")
        wait_until(lambda: _status(processes, ticket) == "ready_to_ship", what="ready to ship")

        _send(processes, "wms", "WMS-1", {"shipment": {"carrier": "SF Express", "tracking_number": NUM,
                                                       "state": "shipped"}}, author="warehouse-lead")
        wait_until(lambda: _status(processes, ticket) == "shipped", what="shipped")
        # the waybill subscribed the parcel with the courier, through the outbox, with the hub's callback and salt
        subscription = wait_until(lambda: parcel.subscriptions.get((COM, NUM)), what="the courier subscription")
        assert subscription.callbackurl == f"{processes.base}/webhooks/courier" and subscription.salt == SALT
        wait_until(lambda: _linked(processes, "courier", f"{COM}:{NUM}") == ticket, what="the parcel linked")

        # resolved before the courier confirms delivery: refused, the CRM told the truth, an operator alerted
        before = len(receivers["crm"].bodies())
        _send(processes, "crm", "CASE-1", {"case": {"status": "Resolved"}}, author="agent@example.com")
        wait_until(lambda: any(b["fields"].get("case.status") == "Shipped" for b in receivers["crm"].bodies()[before:]),
                   what="the valid status written back to the CRM")
        history = processes.get(f"/tickets/{ticket}/history").json()["entries"]
        [refused] = [e for e in history if e["outcome"] == "no_evidence"]
        assert refused["author"] == "agent@example.com" and "courier" in refused["reason"]
        assert _status(processes, ticket) == "shipped"
        [alert] = wait_until(lambda: _messages_about(twin, ticket), what="the refusal alerted to DingTalk")
        assert "agent@example.com" in alert and f"{processes.base}/tickets/{ticket}" in alert
        # the hub asked the courier for the parcel's state before refusing (its word was missing)
        assert any(path.endswith("query.do") for path, _ in parcel.requests)

        push = parcel.advance(COM, NUM)  # collected: a signed push, acknowledged as Kuaidi100 expects
        assert push is not None and push.status_code == 200
        assert push.answer == {"result": True, "returnCode": "200", "message": "成功"}
        wait_until(lambda: _ticket(processes, ticket)["fields"].get("shipment.status", {}).get("value") == "collected",
                   what="the parcel collected")

        # a forged push claiming the parcel was signed for: 401, nothing stored, nothing changes
        param = parcel.push_param(COM, NUM)
        param["lastResult"].update(state="3", ischeck="1")
        param["lastResult"]["data"][0].update(context="已签收", status="签收")
        forged = processes.http.post(f"{processes.base}/webhooks/courier", content=push_body(
            json.dumps(param, ensure_ascii=False), "not-the-salt"), headers={"content-type": FORM})
        assert forged.status_code == 401
        unsigned = processes.http.post(f"{processes.base}/webhooks/courier", content=push_body(
            json.dumps(param, ensure_ascii=False), None), headers={"content-type": FORM})
        assert unsigned.status_code == 401
        time.sleep(1)
        assert _ticket(processes, ticket)["fields"]["shipment.status"]["value"] == "collected"
        assert _status(processes, ticket) == "shipped"

        for _ in range(3):  # in transit, out for delivery, signed: each a signed push, acknowledged
            push = parcel.advance(COM, NUM)
            assert push is not None and push.status_code == 200
            assert push.answer == {"result": True, "returnCode": "200", "message": "成功"}
        wait_until(lambda: _status(processes, ticket) == "delivered", what="delivered on the courier's word")
        fields = _ticket(processes, ticket)["fields"]
        assert fields["shipment.status"]["value"] == "delivered" and fields["shipment.delivered_at"]["value"]

        _send(processes, "crm", "CASE-1", {"case": {"status": "Resolved"}}, author="agent@example.com")
        wait_until(lambda: _status(processes, ticket) == "resolved", what="resolved, now with its evidence")
        assert len(_messages_about(twin, ticket)) == 1  # the accepted resolve raised nothing

        # the stuck ticket: one alert past 6 s, one escalation past 14 s, and nothing more however often beat looks
        wait_until(lambda: len(_messages_about(twin, stuck)) >= 2, timeout=60, what="the dwell alert and escalation")
        time.sleep(3)
        assert len(_messages_about(twin, stuck)) == 2
        notes = [e["outcome"] for e in processes.get(f"/tickets/{stuck}/history").json()["entries"]
                 if e["system"] == "tickethub"]
        assert notes == ["dwell", "dwell_escalation"]
        metrics = processes.get("/metrics").text
        assert 'tickethub_status_refused{reason="no_evidence",system="crm"} 1.0' in metrics
        assert 'tickethub_dwell_breaches{kind="dwell",state="new"} 1.0' in metrics
    except BaseException:
        print(processes.logs())
        raise
