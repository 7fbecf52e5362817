"""The delivery state machine on the real store, with fake connectors: scheduling, delivering, retrying,
dead letters and replay, changes in flight, per-system limits, lost workers and the sweeper.

No HTTP and no Celery: `deliver_once` is what the `deliver` task runs, and a fake connector answers
from a script and remembers what it was asked to write.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from random import Random
from typing import Any

import httpx
import pytest
from sqlalchemy import delete

from hub.bootstrap import Hub, bootstrap
from hub.config import load_settings
from hub.core.errors import UnknownSystem
from hub.core.ports import Connector, WriteRequest, WriteResult
from hub.messaging.relay import Relay
from hub.plugins import build_connector
from hub.store.deliveries import Claim
from hub.store.tables import deliveries
from hub.usecases.deliver import DeliverOutcome, deliver_once
from hub.usecases.ingest import accept_event
from hub.usecases.liveness import WorkerIdentity, heartbeat, take_back_from_dead, this_process
from hub.usecases.process import Processed, process_event
from hub.usecases.replay import replay_delivery
from hub.usecases.sweep import sweep_once
from tests.conftest import Clock

T0 = datetime(2026, 2, 13, 9, 0, tzinfo=UTC)
PHONE, NEW_PHONE = "+44 20 7946 0000", "+44 20 7946 0999"  # both valid for the ERP's phone pattern


# ---- fakes and helpers ----------------------------------------------------------------------------

class FakeSystem:
    """A connector that answers from a script (the last answer repeats) and records every request."""

    def __init__(self, system: str, *answers: WriteResult,
                 during_write: Callable[[WriteRequest], None] | None = None):
        self.system = system
        self.answers = list(answers) or [ok()]
        self.requests: list[WriteRequest] = []
        self.during_write = during_write

    def write(self, request: WriteRequest) -> WriteResult:
        self.requests.append(request)
        if self.during_write is not None:
            self.during_write(request)
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]

    @property
    def written(self) -> list[dict[str, Any]]:
        return [dict(r.fields) for r in self.requests]


def ok(local_id: str | None = None) -> WriteResult:
    return WriteResult(200, local_id=local_id)


def failing(status: int, retry_after: float | None = None) -> WriteResult:
    return WriteResult(status, retry_after, f"HTTP {status}: answer {status}")


def systems(*fakes: FakeSystem) -> Callable[[str], Connector]:
    """connector_for over the fakes; a system without one cannot be built."""
    by_name = {fake.system: fake for fake in fakes}

    def connector_for(system: str) -> Connector:
        if system not in by_name:
            raise UnknownSystem(f"no fake for `{system}` in this test")
        return by_name[system]

    return connector_for


def crm_case(minutes: int, local_id: str = "CASE-1", **fields: object) -> dict[str, object]:
    return {"local_id": local_id, "modified_at": (T0 + timedelta(minutes=minutes)).isoformat(),
            "author": "agent@example.com", "fields": fields}


def submit(hub: Hub, system: str, external_id: str, payload: object) -> Processed:
    event_id, _ = accept_event(hub, system, external_id, payload)
    return process_event(hub, event_id)


def new_case(hub: Hub, local_id: str = "CASE-1", name: str = "Ada", phone: str = PHONE) -> Processed:
    """A CRM case with a contact: the ERP and the WMS subscribe to its name and phone."""
    result = submit(hub, "crm", f"open-{local_id}", crm_case(0, local_id, contact={"name": name, "phone": phone}))
    assert result.state == "processed" and result.ticket_id
    return result


def delivery_to(hub: Hub, ticket_id: str | None, system: str, state: str | None = None) -> dict[str, Any]:
    """The newest delivery of the ticket to the system (in the given state)."""
    with hub.store.unit_of_work() as uow:
        rows = [d for d in uow.deliveries.find(state=state, system=system) if d["ticket_id"] == ticket_id]
    assert rows, f"no {state or ''} delivery of {ticket_id} to {system}"
    return rows[0]


def reload(hub: Hub, delivery_id: int) -> dict[str, Any]:
    with hub.store.unit_of_work() as uow:
        row = uow.deliveries.get(delivery_id)
    assert row is not None
    return row


def attempts(hub: Hub, delivery_id: int) -> list[dict[str, Any]]:
    with hub.store.unit_of_work() as uow:
        return uow.deliveries.attempts(delivery_id)


def deliver(hub: Hub, delivery_id: int, *fakes: FakeSystem, seed: int = 0) -> DeliverOutcome:
    return deliver_once(hub, delivery_id, systems(*fakes), Random(seed))


def claim_directly(hub: Hub, delivery_id: int) -> Claim:
    """Take a delivery in flight the way a worker does, and never finish it (the worker dies)."""
    with hub.store.unit_of_work() as uow:
        claim = uow.deliveries.claim(delivery_id, hub.clock(),
                                     timedelta(seconds=hub.settings.delivery.lease_seconds), lambda _system: 100)
        uow.commit()
    assert isinstance(claim, Claim), claim
    return claim


def with_delivery_settings(hub: Hub, **changes: Any) -> Hub:
    """The same hub (database, clock) with some [delivery] settings changed."""
    settings = hub.settings.model_copy(update={"delivery": hub.settings.delivery.model_copy(update=changes)})
    return dataclasses.replace(hub, settings=settings)


# ---- scheduling -------------------------------------------------------------------------------------

def test_a_crm_change_schedules_one_pending_delivery_per_subscribed_system(hub: Hub) -> None:
    """A new case's contact is owed to the ERP and the WMS: one pending delivery each, listed by the event."""
    result = new_case(hub)
    with hub.store.unit_of_work() as uow:
        scheduled = [d for d in uow.deliveries.find() if d["ticket_id"] == result.ticket_id]
    assert sorted(d["system"] for d in scheduled) == ["erp", "wms"]
    assert {d["state"] for d in scheduled} == {"pending"}
    assert sorted(result.deliveries) == sorted(d["id"] for d in scheduled)


def test_a_system_subscribing_to_none_of_the_changed_fields_gets_no_delivery(hub: Hub) -> None:
    """The MES and the courier receive nothing for a customer's name and phone, and the CRM not its own change."""
    new_case(hub)
    with hub.store.unit_of_work() as uow:
        for system in ("mes", "courier", "crm"):
            assert uow.deliveries.find(system=system) == []
        assert {w["system"] for w in uow.tickets.pending_writes()} == {"erp", "wms"}


def test_a_second_change_before_delivery_joins_the_pending_delivery_with_the_newest_value(hub: Hub) -> None:
    """Two quick edits of a phone make one write per system, carrying the later phone only."""
    ticket_id = new_case(hub).ticket_id
    again = submit(hub, "crm", "e2", crm_case(5, contact={"phone": NEW_PHONE}))
    assert again.deliveries == ()  # the pending ones will carry it
    erp = FakeSystem("erp")
    assert deliver(hub, delivery_to(hub, ticket_id, "erp")["id"], erp).kind == "delivered"
    assert erp.written == [{"party.name": "Ada", "party.phone": NEW_PHONE}]


# ---- delivered ----------------------------------------------------------------------------------------

def test_a_write_carries_the_systems_own_field_names_and_values(hub: Hub) -> None:
    """The ERP is sent party.name and party.phone, the WMS shipment.recipient and shipment.recipient_phone."""
    ticket_id = new_case(hub).ticket_id
    erp, wms = FakeSystem("erp"), FakeSystem("wms")
    for system in ("erp", "wms"):
        outcome = deliver(hub, delivery_to(hub, ticket_id, system)["id"], erp, wms)
        assert outcome.kind == "delivered" and outcome.follow_ups == []
    assert erp.written == [{"party.name": "Ada", "party.phone": PHONE}]
    assert wms.written == [{"shipment.recipient": "Ada", "shipment.recipient_phone": PHONE}]
    request = erp.requests[0]
    assert (request.ticket_id, request.system, request.local_id, request.attempt) == (ticket_id, "erp", None, 1)


def test_a_delivered_write_is_recorded_with_its_attempt(hub: Hub) -> None:
    """After a successful write the delivery is `delivered`, with the answer and one attempt on record."""
    ticket_id = new_case(hub).ticket_id
    delivery_id = delivery_to(hub, ticket_id, "erp")["id"]
    deliver(hub, delivery_id, FakeSystem("erp"))
    row = reload(hub, delivery_id)
    assert (row["state"], row["last_status"], row["last_error"], row["attempts"]) == ("delivered", 200, None, 1)
    assert row["delivered_at"] == hub.clock()
    assert [(a["number"], a["outcome"], a["status_code"]) for a in attempts(hub, delivery_id)] == [
        (1, "delivered", 200)]
    with hub.store.unit_of_work() as uow:
        assert uow.tickets.pending_writes("erp") == []  # nothing more is owed to the ERP


def test_the_target_reporting_the_delivered_value_back_is_an_echo(hub: Hub) -> None:
    """Once the hub wrote the phone to the ERP, the ERP's webhook carrying that phone is not a new change."""
    ticket_id = new_case(hub).ticket_id
    assert ticket_id is not None
    deliver(hub, delivery_to(hub, ticket_id, "erp")["id"], FakeSystem("erp"))
    with hub.store.unit_of_work() as uow:
        uow.tickets.link(ticket_id, "erp", "SO-1", T0)
        uow.commit()
    back = submit(hub, "erp", "erp-1", {"local_id": "SO-1", "modified_at": (T0 + timedelta(minutes=3)).isoformat(),
                                        "author": "accounting", "fields": {"party": {"phone": PHONE}}})
    assert [o.kind for o in back.outcomes] == ["echo"]
    assert back.deliveries == ()


def test_a_local_id_returned_by_the_target_links_its_record_to_the_ticket(hub: Hub) -> None:
    """When the ERP answers with the order it created, that order finds the ticket and later writes name it."""
    ticket_id = new_case(hub).ticket_id
    erp = FakeSystem("erp", ok(local_id="SO-77"), ok())
    deliver(hub, delivery_to(hub, ticket_id, "erp")["id"], erp)
    with hub.store.unit_of_work() as uow:
        assert uow.tickets.find_by_xref("erp", "SO-77") == ticket_id
    follow = submit(hub, "crm", "e2", crm_case(5, contact={"phone": NEW_PHONE}))
    erp_delivery = [d for d in follow.deliveries if reload(hub, d)["system"] == "erp"]
    deliver(hub, erp_delivery[0], erp)
    assert [r.local_id for r in erp.requests] == [None, "SO-77"]


def test_delivering_a_finished_delivery_again_writes_nothing(hub: Hub) -> None:
    """A deliver task run twice (broker redelivery) does not write the same fields a second time."""
    ticket_id = new_case(hub).ticket_id
    delivery_id = delivery_to(hub, ticket_id, "erp")["id"]
    erp = FakeSystem("erp")
    assert deliver(hub, delivery_id, erp).kind == "delivered"
    assert deliver(hub, delivery_id, erp).kind == "gone"
    assert deliver(hub, 999_999, erp).kind == "gone"
    assert len(erp.requests) == 1


# ---- retries ------------------------------------------------------------------------------------------

def test_three_server_errors_then_success_is_delivered_on_the_fourth_attempt(hub: Hub, clock: Clock) -> None:
    """A receiver answering 500 three times then 200 gets the write, with four attempts on record."""
    accepted_at = clock.now
    ticket_id = new_case(hub).ticket_id
    delivery_id = delivery_to(hub, ticket_id, "erp")["id"]
    erp = FakeSystem("erp", failing(500), failing(500), failing(500), ok())
    rng = Random(2026)
    for _ in range(3):
        outcome = deliver_once(hub, delivery_id, systems(erp), rng)
        row = reload(hub, delivery_id)
        assert outcome.kind == "retry" and row["state"] == "retry_wait"
        assert row["next_attempt_at"] > clock.now
        assert outcome.countdown == pytest.approx((row["next_attempt_at"] - clock.now).total_seconds(), abs=1e-3)
        assert (row["last_status"], row["last_error"]) == (500, "HTTP 500: answer 500")
        clock.now = row["next_attempt_at"] + timedelta(seconds=1)
    outcome = deliver_once(hub, delivery_id, systems(erp), rng)
    assert outcome.kind == "delivered"
    assert outcome.latency_seconds == pytest.approx((clock.now - accepted_at).total_seconds())
    row = reload(hub, delivery_id)
    assert (row["state"], row["attempts"], row["last_error"]) == ("delivered", 4, None)
    assert [(a["number"], a["outcome"], a["status_code"]) for a in attempts(hub, delivery_id)] == [
        (1, "retry", 500), (2, "retry", 500), (3, "retry", 500), (4, "delivered", 200)]
    assert erp.written == [{"party.name": "Ada", "party.phone": PHONE}] * 4  # the same write every time
    assert [r.attempt for r in erp.requests] == [1, 2, 3, 4]


def test_a_retry_asked_for_before_its_time_is_not_due(hub: Hub, clock: Clock) -> None:
    """A deliver task that runs early (a duplicate message) does not write before the back-off is over."""
    ticket_id = new_case(hub).ticket_id
    delivery_id = delivery_to(hub, ticket_id, "erp")["id"]
    erp = FakeSystem("erp", failing(503), ok())
    deliver(hub, delivery_id, erp)
    clock.now = reload(hub, delivery_id)["next_attempt_at"] - timedelta(milliseconds=10)
    assert deliver(hub, delivery_id, erp).kind == "not_due"
    assert len(erp.requests) == 1 and reload(hub, delivery_id)["state"] == "retry_wait"


def test_a_throttled_write_waits_at_least_the_retry_after(hub: Hub, clock: Clock) -> None:
    """A 429 with Retry-After: 120 is not tried again before 120 s have passed, and is tried then."""
    ticket_id = new_case(hub).ticket_id
    delivery_id = delivery_to(hub, ticket_id, "erp")["id"]
    erp = FakeSystem("erp", failing(429, retry_after=120), ok())
    throttled_at = clock.now
    outcome = deliver(hub, delivery_id, erp)
    assert outcome.kind == "retry" and outcome.countdown is not None and outcome.countdown >= 120
    assert reload(hub, delivery_id)["next_attempt_at"] >= throttled_at + timedelta(seconds=120)
    assert attempts(hub, delivery_id)[0]["retry_after_seconds"] == 120
    clock.now = throttled_at + timedelta(seconds=119)
    assert deliver(hub, delivery_id, erp).kind == "not_due"
    clock.now = throttled_at + timedelta(seconds=120)
    assert deliver(hub, delivery_id, erp).kind == "delivered"
    assert len(erp.requests) == 2


def test_a_write_failing_past_the_retry_horizon_is_given_up(hub: Hub, clock: Clock, tmp_path: Path) -> None:
    """With a 60 s horizon, a receiver that keeps failing is retried within it, then dead-lettered as given up."""
    config = tmp_path / "tickethub.toml"
    config.write_text("[delivery]\nretry_horizon_seconds = 60\n", encoding="utf-8")
    short = bootstrap(load_settings(config, environ={}), engine=hub.engine, clock=clock)
    ticket_id = new_case(short).ticket_id
    created = delivery_to(short, ticket_id, "erp")
    erp, rng = FakeSystem("erp", failing(500)), Random(11)
    for _ in range(50):
        outcome = deliver_once(short, created["id"], systems(erp), rng)
        if outcome.kind != "retry":
            break
        clock.now = reload(short, created["id"])["next_attempt_at"]
    row = reload(short, created["id"])
    assert outcome.kind == "dead" and row["state"] == "dead"
    assert row["last_error"].startswith("gave up after") and "HTTP 500" in row["last_error"]
    tried = attempts(short, created["id"])
    assert len(tried) >= 4  # waits of at most 5 + 10 + 20 s all fit in 60 s
    assert [a["outcome"] for a in tried] == ["retry"] * (len(tried) - 1) + ["dead"]
    assert all(a["started_at"] <= created["created_at"] + timedelta(seconds=60) for a in tried)


def test_a_retry_after_beyond_the_horizon_gives_up_at_once(hub: Hub) -> None:
    """A system asking to wait longer than the horizon leaves has its write dead-lettered instead of parked."""
    short = with_delivery_settings(hub, retry_horizon_seconds=60)
    ticket_id = new_case(short).ticket_id
    delivery_id = delivery_to(short, ticket_id, "erp")["id"]
    assert deliver(short, delivery_id, FakeSystem("erp", failing(429, retry_after=120))).kind == "dead"
    assert "gave up" in reload(short, delivery_id)["last_error"]


# ---- dead letters and replay ------------------------------------------------------------------------

def test_a_refused_write_is_dead_lettered_at_once_with_the_answer(hub: Hub) -> None:
    """A 400 is not retried: the delivery is dead after one attempt, with the status and the error kept."""
    ticket_id = new_case(hub).ticket_id
    delivery_id = delivery_to(hub, ticket_id, "erp")["id"]
    erp = FakeSystem("erp", WriteResult(400, error="HTTP 400: party.phone is invalid"))
    outcome = deliver(hub, delivery_id, erp)
    assert (outcome.kind, outcome.countdown, outcome.follow_ups) == ("dead", None, [])
    row = reload(hub, delivery_id)
    assert (row["state"], row["last_status"], row["last_error"]) == ("dead", 400, "HTTP 400: party.phone is invalid")
    assert [(a["outcome"], a["status_code"]) for a in attempts(hub, delivery_id)] == [("dead", 400)]
    with hub.store.unit_of_work() as uow:
        assert [d["id"] for d in uow.deliveries.find(state="dead")] == [delivery_id]
        [alert] = uow.alerts.recent()  # an operator is told, once
    assert (alert["kind"], alert["ticket_id"], alert["system"]) == ("delivery_dead", ticket_id, "erp")
    assert alert["facts"]["error"] == "HTTP 400: party.phone is invalid"


def test_a_replayed_dead_letter_is_written_again_with_the_same_fields(hub: Hub) -> None:
    """After the receiver is fixed, replay sends the dead write again, and the dead letter points at the new one."""
    ticket_id = new_case(hub).ticket_id
    dead_id = delivery_to(hub, ticket_id, "erp")["id"]
    erp = FakeSystem("erp", failing(400), ok())
    deliver(hub, dead_id, erp)
    created = replay_delivery(hub, dead_id)
    assert len(created) == 1 and created[0] != dead_id
    assert reload(hub, created[0])["state"] == "pending"
    dead = reload(hub, dead_id)
    assert (dead["state"], dead["replayed_as"]) == ("replayed", created[0])
    assert deliver(hub, created[0], erp).kind == "delivered"
    assert erp.written[1] == erp.written[0] == {"party.name": "Ada", "party.phone": PHONE}
    with pytest.raises(LookupError):
        replay_delivery(hub, dead_id)  # a replayed dead letter is not replayed twice


def test_replay_does_not_resend_a_value_superseded_since(hub: Hub) -> None:
    """A dead phone write replayed after a newer phone reached the ERP sends only what is still current."""
    ticket_id = new_case(hub).ticket_id
    dead_id = delivery_to(hub, ticket_id, "erp")["id"]
    erp = FakeSystem("erp", failing(400), ok())
    deliver(hub, dead_id, erp)
    newer = submit(hub, "crm", "e2", crm_case(5, contact={"phone": NEW_PHONE}))
    second = [d for d in newer.deliveries if reload(hub, d)["system"] == "erp"]
    assert deliver(hub, second[0], erp).kind == "delivered"
    created = replay_delivery(hub, dead_id)
    assert deliver(hub, created[0], erp).kind == "delivered"
    assert erp.written == [{"party.name": "Ada", "party.phone": PHONE},  # refused
                           {"party.phone": NEW_PHONE},
                           {"party.name": "Ada"}]  # the replay: the old phone is not sent again


def test_replaying_a_delivery_that_is_not_dead_is_refused(hub: Hub) -> None:
    """Only dead letters can be replayed; asking for a pending or unknown delivery says so."""
    ticket_id = new_case(hub).ticket_id
    with pytest.raises(LookupError, match="not dead-lettered"):
        replay_delivery(hub, delivery_to(hub, ticket_id, "erp")["id"])
    with pytest.raises(LookupError, match="no delivery"):
        replay_delivery(hub, 999_999)


def test_a_system_that_cannot_be_written_to_dead_letters_with_a_clear_error(hub: Hub) -> None:
    """A subscriber with no base_url configured gets its writes dead-lettered, saying what is missing."""
    def no_http(request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"no HTTP expected, got {request.url}")

    client = httpx.Client(transport=httpx.MockTransport(no_http))
    ticket_id = new_case(hub).ticket_id
    delivery_id = delivery_to(hub, ticket_id, "erp")["id"]
    outcome = deliver_once(hub, delivery_id, lambda s: build_connector(s, hub.settings, {}, client), Random(0))
    assert outcome.kind == "dead"
    row = reload(hub, delivery_id)
    assert row["state"] == "dead" and row["last_status"] is None
    assert "erp" in row["last_error"] and "base_url" in row["last_error"]
    assert [(a["outcome"], a["status_code"]) for a in attempts(hub, delivery_id)] == [("dead", None)]


# ---- changes in flight, concurrency, lost workers -------------------------------------------------------

def test_a_change_made_while_a_write_is_in_flight_goes_in_a_follow_up_delivery(hub: Hub) -> None:
    """A phone edited during a write to the ERP is neither lost nor slipped into that write: it follows it."""
    ticket_id = new_case(hub).ticket_id
    delivery_id = delivery_to(hub, ticket_id, "erp")["id"]
    changed_meanwhile: list[Processed] = []

    def edit_phone(_request: WriteRequest) -> None:
        if not changed_meanwhile:
            changed_meanwhile.append(submit(hub, "crm", "e2", crm_case(5, contact={"phone": NEW_PHONE})))

    erp = FakeSystem("erp", during_write=edit_phone)
    outcome = deliver(hub, delivery_id, erp)
    assert outcome.kind == "delivered"
    assert changed_meanwhile[0].deliveries == ()  # the ERP's is in flight, the WMS's still pending
    assert len(outcome.follow_ups) == 1
    follow = reload(hub, outcome.follow_ups[0])
    assert (follow["ticket_id"], follow["system"], follow["state"]) == (ticket_id, "erp", "pending")
    assert deliver(hub, outcome.follow_ups[0], erp).kind == "delivered"
    assert erp.written == [{"party.name": "Ada", "party.phone": PHONE}, {"party.phone": NEW_PHONE}]


def test_a_change_made_while_a_write_fails_is_not_slipped_into_its_retry(hub: Hub, clock: Clock) -> None:
    """A retry resends exactly the write that failed; a phone edited meanwhile follows in the next delivery."""
    ticket_id = new_case(hub).ticket_id
    delivery_id = delivery_to(hub, ticket_id, "erp")["id"]

    def edit_phone(request: WriteRequest) -> None:
        if request.attempt == 1:
            submit(hub, "crm", "e2", crm_case(5, contact={"phone": NEW_PHONE}))

    erp = FakeSystem("erp", WriteResult(None, error="timed out: ReadTimeout"), ok(), during_write=edit_phone)
    assert deliver(hub, delivery_id, erp).kind == "retry"
    clock.now = reload(hub, delivery_id)["next_attempt_at"]
    outcome = deliver(hub, delivery_id, erp)
    assert outcome.kind == "delivered"
    assert erp.written[1] == erp.written[0] == {"party.name": "Ada", "party.phone": PHONE}
    assert len(outcome.follow_ups) == 1
    assert deliver(hub, outcome.follow_ups[0], erp).kind == "delivered"
    assert erp.written[2] == {"party.phone": NEW_PHONE}


def test_a_system_at_its_in_flight_limit_makes_its_next_write_wait_but_not_other_systems(hub: Hub,
                                                                                        clock: Clock) -> None:
    """With one write at a time per system, a second ERP write is told to come back, while the WMS is served."""
    one_at_a_time = with_delivery_settings(hub, max_in_flight_per_system=1)
    first, second = new_case(one_at_a_time, "CASE-1").ticket_id, new_case(one_at_a_time, "CASE-2").ticket_id
    claim_directly(one_at_a_time, delivery_to(hub, first, "erp")["id"])  # a slow ERP write, still running
    erp, wms = FakeSystem("erp"), FakeSystem("wms")
    waiting = delivery_to(hub, second, "erp")["id"]
    outcome = deliver(one_at_a_time, waiting, erp, wms)
    assert outcome.kind == "busy" and outcome.countdown is not None and outcome.countdown > 0
    assert erp.requests == [] and reload(hub, waiting)["state"] == "pending"
    assert deliver(one_at_a_time, delivery_to(hub, second, "wms")["id"], erp, wms).kind == "delivered"
    clock.now += timedelta(seconds=hub.settings.delivery.lease_seconds + 1)  # the slow write's lease runs out
    assert deliver(one_at_a_time, waiting, erp, wms).kind == "delivered"
    assert erp.written == [{"party.name": "Ada", "party.phone": PHONE}]


def test_a_delivery_whose_worker_died_is_swept_and_sent_again_with_the_same_fields(hub: Hub, clock: Clock) -> None:
    """A worker killed mid-write leaves its delivery in flight; after the lease the sweeper re-publishes it
    and the next worker writes exactly the same fields."""
    ticket_id = new_case(hub).ticket_id
    delivery_id = delivery_to(hub, ticket_id, "erp")["id"]
    lost = claim_directly(hub, delivery_id)
    submit(hub, "crm", "e2", crm_case(5, contact={"phone": NEW_PHONE}))  # waits for the next delivery
    erp = FakeSystem("erp")
    assert deliver(hub, delivery_id, erp).kind == "in_flight"  # the lease still holds: nobody steals it
    assert delivery_id not in sweep_once(hub)[1]  # not overdue while the lease holds
    clock.now += timedelta(seconds=hub.settings.delivery.lease_seconds + 1)
    _, overdue = sweep_once(hub)
    assert delivery_id in overdue
    outcome = deliver(hub, delivery_id, erp)
    assert outcome.kind == "delivered"
    assert erp.written == [lost.system_fields()] == [{"party.name": "Ada", "party.phone": PHONE}]
    assert erp.requests[0].attempt == 2
    assert deliver(hub, outcome.follow_ups[0], erp).kind == "delivered"  # then the newer phone
    assert erp.written[1] == {"party.phone": NEW_PHONE}


def test_a_worker_finishing_after_its_lease_ran_out_changes_nothing(hub: Hub, clock: Clock) -> None:
    """A write that hung past its lease while another worker delivered is recorded as late and ignored."""
    ticket_id = new_case(hub).ticket_id
    delivery_id = delivery_to(hub, ticket_id, "erp")["id"]
    other_worker = FakeSystem("erp", ok())
    taken_over: list[DeliverOutcome] = []

    def hang_until_taken_over(_request: WriteRequest) -> None:
        clock.now += timedelta(seconds=hub.settings.delivery.lease_seconds + 1)
        assert delivery_id in sweep_once(hub)[1]
        taken_over.append(deliver(hub, delivery_id, other_worker))

    hung = FakeSystem("erp", failing(500), during_write=hang_until_taken_over)
    outcome = deliver(hub, delivery_id, hung)
    assert taken_over[0].kind == "delivered"
    assert (outcome.kind, outcome.countdown, outcome.follow_ups) == ("late", None, [])
    row = reload(hub, delivery_id)
    assert (row["state"], row["last_status"], row["attempts"]) == ("delivered", 200, 2)
    assert sorted((a["number"], a["outcome"], a["status_code"]) for a in attempts(hub, delivery_id)) == [
        (1, "late", 500), (2, "delivered", 200)]
    assert hung.written == other_worker.written  # the same write, so the receiver holds the same value


# ---- the sweeper ----------------------------------------------------------------------------------------

def test_sweep_dispatches_events_that_were_never_dispatched(hub: Hub) -> None:
    """An accepted event whose publish was lost is handed out by the next sweep, once."""
    event_id, _ = accept_event(hub, "crm", "e1", crm_case(0, contact={"name": "Ada"}))
    assert sweep_once(hub)[0] == [event_id]
    assert sweep_once(hub)[0] == []


def test_sweep_redispatches_events_still_unprocessed_after_the_wait(hub: Hub, clock: Clock) -> None:
    """An event dispatched but unprocessed after redispatch_after_seconds is dispatched again; once processed, not."""
    event_id, _ = accept_event(hub, "crm", "e1", crm_case(0, contact={"name": "Ada"}))
    wait = hub.settings.delivery.redispatch_after_seconds
    assert sweep_once(hub)[0] == [event_id]
    clock.now += timedelta(seconds=wait - 1)
    assert sweep_once(hub)[0] == []
    clock.now += timedelta(seconds=2)
    assert sweep_once(hub)[0] == [event_id]
    process_event(hub, event_id)
    clock.now += timedelta(seconds=wait + 1)
    assert sweep_once(hub)[0] == []


def test_sweep_leaves_events_queued_behind_a_backlog_until_a_later_one_is_processed(hub: Hub, clock: Clock) -> None:
    """While workers are still processing events published before them, old unprocessed events are not
    published again; once an event published after one of them is processed, that one is (presumed lost)."""
    wait = hub.settings.delivery.redispatch_after_seconds
    first, _ = accept_event(hub, "crm", "e1", crm_case(0, contact={"name": "Ada"}))
    lost, _ = accept_event(hub, "crm", "e2", crm_case(1, contact={"name": "Bea"}))
    assert sweep_once(hub)[0] == [first, lost]
    clock.now += timedelta(seconds=10)
    later, _ = accept_event(hub, "crm", "e3", crm_case(2, contact={"name": "Cy"}))
    assert sweep_once(hub)[0] == [later]
    clock.now += timedelta(seconds=wait + 1)
    process_event(hub, first)  # the workers are busy with what was published first
    assert sweep_once(hub)[0] == []
    clock.now += timedelta(seconds=1)
    process_event(hub, later)  # published after `lost`, yet processed: `lost`'s message is gone
    assert sweep_once(hub)[0] == [lost]


def test_relay_publishes_the_events_it_is_told_about_and_finds_the_others(hub: Hub) -> None:
    """Events intake tells the relay about are stored as dispatched and published once, without another
    transaction; one accepted elsewhere (no relay: stored undispatched) is found by the relay's scan of the
    inbox; nothing is published twice."""
    published: list[str] = []
    relay = Relay(hub, published.extend, interval=0)
    hub.on_accept.append(relay.notify)
    told = [accept_event(hub, "crm", f"e{n}", crm_case(n, contact={"name": "Ada"}))[0] for n in range(3)]
    hub.on_accept.clear()
    relay.notify(told[0])  # told twice before the round: still published once
    untold, _ = accept_event(hub, "crm", "e9", crm_case(9, contact={"name": "Bea"}))
    with hub.store.unit_of_work() as uow:
        dispatched = {event_id: uow.inbox.get(event_id)["dispatched_at"] for event_id in [*told, untold]}
    assert [event_id for event_id, at in dispatched.items() if at is None] == [untold]
    relay.relay_once()
    relay.relay_once()
    assert published == [*told, untold]


def test_sweep_publishes_again_an_event_whose_relay_died_before_publishing(hub: Hub, clock: Clock) -> None:
    """An event stored as dispatched whose relay never published it (the API process died in between) is
    published by the sweeper once it has waited redispatch_after_seconds unprocessed."""
    relay = Relay(hub, lambda _ids: None, interval=3600)
    hub.on_accept.append(relay.notify)
    event_id, _ = accept_event(hub, "crm", "e1", crm_case(0, contact={"name": "Ada"}))
    hub.on_accept.clear()  # the relay never runs a round: its process is gone
    assert sweep_once(hub)[0] == []
    clock.now += timedelta(seconds=hub.settings.delivery.redispatch_after_seconds + 1)
    assert sweep_once(hub)[0] == [event_id]


def test_relay_leaves_events_it_could_not_publish_for_the_next_round(hub: Hub) -> None:
    """A failed publish marks the batch undispatched again, so the next round publishes it."""
    published: list[str] = []

    def broken(_ids: list[str]) -> None:
        raise ConnectionError("broker down")

    relay = Relay(hub, broken, interval=0)
    event_id, _ = accept_event(hub, "crm", "e1", crm_case(0, contact={"name": "Ada"}))
    relay.notify(event_id)
    with pytest.raises(ConnectionError):
        relay.relay_once()
    relay.publish = published.extend
    relay.relay_once()
    assert published == [event_id]


def test_sweep_republishes_pending_deliveries_whose_task_was_lost(hub: Hub, clock: Clock) -> None:
    """Deliveries still pending after redispatch_after_seconds are published again, and not at every sweep."""
    result = new_case(hub)
    assert sweep_once(hub)[1] == []
    clock.now += timedelta(seconds=hub.settings.delivery.redispatch_after_seconds + 1)
    assert sorted(sweep_once(hub)[1]) == sorted(result.deliveries)
    assert sweep_once(hub)[1] == []


def test_sweep_leaves_pending_deliveries_queued_behind_a_backlog(hub: Hub, clock: Clock) -> None:
    """Deliveries pending long while workers are still writing older ones are not published again; once
    a delivery created after one of them has been claimed, that one is (its task is presumed lost)."""
    first, second = new_case(hub, "CASE-1").deliveries, new_case(hub, "CASE-2").deliveries
    clock.now += timedelta(seconds=hub.settings.delivery.redispatch_after_seconds + 1)
    erp, wms = FakeSystem("erp"), FakeSystem("wms")
    deliver(hub, first[0], erp, wms)  # workers busy with the oldest
    assert sweep_once(hub)[1] == []
    deliver(hub, second[-1], erp, wms)  # created after first[1] and second[0], yet written first
    assert sorted(sweep_once(hub)[1]) == sorted([first[1], second[0]])


def test_sweep_schedules_deliveries_for_outbox_rows_left_without_one(hub: Hub) -> None:
    """Writes owed to a system with no delivery in progress (the scheduling was lost) get a delivery."""
    result = new_case(hub)
    with hub.store.unit_of_work() as uow:
        uow.conn.execute(delete(deliveries).where(deliveries.c.ticket_id == result.ticket_id))
        uow.commit()
    _, scheduled = sweep_once(hub)
    assert len(scheduled) == 2
    assert sorted(reload(hub, d)["system"] for d in scheduled) == ["erp", "wms"]
    assert sweep_once(hub)[1] == []  # scheduled once
    erp = FakeSystem("erp")
    deliver(hub, next(d for d in scheduled if reload(hub, d)["system"] == "erp"), erp)
    assert erp.written == [{"party.name": "Ada", "party.phone": PHONE}]


# ---- workers that die: taken back in seconds, not after the lease ---------------------------------------

def test_a_dead_workers_write_is_taken_back_within_seconds_and_its_late_outcome_does_not_count(
        hub: Hub, clock: Clock) -> None:
    """A worker that claimed a write and stopped beating is dead after `worker_dead_after_seconds`: the next
    sweep takes its write back (long before the lease), the next worker sends the same fields, and should the
    first one come back with an outcome, it is recorded as late, never over the newer claim."""
    ticket_id = new_case(hub).ticket_id
    delivery_id = delivery_to(hub, ticket_id, "erp")["id"]
    ghost = this_process(clock())
    heartbeat(hub, ghost)
    with hub.store.unit_of_work() as uow:
        lost = uow.deliveries.claim(delivery_id, clock(), timedelta(seconds=hub.settings.delivery.lease_seconds),
                                    lambda _system: 100, worker="elsewhere:4242:1")
        uow.commit()
    assert isinstance(lost, Claim)
    clock.now += timedelta(seconds=3)
    assert delivery_id in sweep_once(hub)[1]  # "elsewhere" never beat at all: dead at once

    ticket_2 = new_case(hub, "CASE-2").ticket_id
    second = delivery_to(hub, ticket_2, "erp")["id"]
    heartbeat(hub, ghost)
    with hub.store.unit_of_work() as uow:
        held = uow.deliveries.claim(second, clock(), timedelta(seconds=hub.settings.delivery.lease_seconds),
                                    lambda _system: 100, worker=ghost.worker_id)
        uow.commit()
    assert isinstance(held, Claim)
    clock.now += timedelta(seconds=hub.settings.delivery.worker_dead_after_seconds - 1)
    assert second not in sweep_once(hub)[1]  # its worker beat recently: alive, its write is its own
    clock.now += timedelta(seconds=2)
    assert second in sweep_once(hub)[1]  # silent too long: dead

    erp = FakeSystem("erp")
    assert deliver(hub, second, erp).kind == "delivered"
    assert erp.written == [held.system_fields()] and erp.requests[0].attempt == 2
    with hub.store.unit_of_work() as uow:  # the ghost comes back with its answer: too late, nothing changes
        assert not uow.deliveries.finish(held, "delivered", clock(), 200, None)
    assert reload(hub, second)["attempts"] == 2 and reload(hub, second)["state"] == "delivered"


def test_a_worker_starting_on_a_host_takes_back_at_once_what_its_dead_predecessors_held(
        hub: Hub, clock: Clock) -> None:
    """After a crash of `tickethub up`, the new deliveries worker finds the old workers of its host gone (their
    processes no longer run) and takes their writes back before any timeout."""
    ticket_id = new_case(hub).ticket_id
    delivery_id = delivery_to(hub, ticket_id, "erp")["id"]
    me = this_process(clock())
    dead = WorkerIdentity(f"{me.host}:999999:1", me.host, 999_999, clock())  # no such process
    heartbeat(hub, dead)
    with hub.store.unit_of_work() as uow:
        uow.deliveries.claim(delivery_id, clock(), timedelta(seconds=hub.settings.delivery.lease_seconds),
                             lambda _system: 100, worker=dead.worker_id)
        uow.commit()
    assert take_back_from_dead(hub) == []  # by heartbeat alone it is not dead yet
    assert take_back_from_dead(hub, me) == [delivery_id]
    assert deliver(hub, delivery_id, FakeSystem("erp")).kind == "delivered"


def test_a_batch_the_database_fails_to_claim_is_tried_again_soon_and_nothing_is_left_held(
        hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    """The ERP's and the WMS's writes of one ticket travel together; the database fails their claim: both are
    tried again after a second or so, neither is left in flight until its lease ends, and both land after."""
    from hub.store.deliveries import DeliveryRepository
    from hub.usecases.deliver import deliver_many

    ticket_id = new_case(hub).ticket_id
    erp_id, wms_id = delivery_to(hub, ticket_id, "erp")["id"], delivery_to(hub, ticket_id, "wms")["id"]
    claim_many = DeliveryRepository.claim_many

    def hiccup(self: DeliveryRepository, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("database hiccup")

    monkeypatch.setattr(DeliveryRepository, "claim_many", hiccup)
    erp, wms = FakeSystem("erp"), FakeSystem("wms")
    outcomes = deliver_many(hub, [erp_id, wms_id], systems(erp, wms), Random(0))
    assert [o.kind for o in outcomes] == ["busy", "busy"] and all(1 <= (o.countdown or 0) < 2 for o in outcomes)
    assert reload(hub, erp_id)["state"] == reload(hub, wms_id)["state"] == "pending"
    assert erp.requests == wms.requests == []
    monkeypatch.setattr(DeliveryRepository, "claim_many", claim_many)
    assert [o.kind for o in deliver_many(hub, [erp_id, wms_id], systems(erp, wms), Random(0))] == [
        "delivered", "delivered"]


def test_a_batch_respects_the_per_system_limit_as_claims_one_by_one_would(hub: Hub) -> None:
    """Two tickets' ERP and WMS writes in one batch with one write in flight allowed per system: the first of
    each system is written, the second is busy (published again with a countdown), as if claimed in turn."""
    from hub.usecases.deliver import deliver_many

    one_at_a_time = with_delivery_settings(hub, max_in_flight_per_system=1)
    first, second = new_case(hub).ticket_id, new_case(hub, "CASE-2").ticket_id
    ids = [delivery_to(hub, t, s)["id"] for t in (first, second) for s in ("erp", "wms")]
    erp, wms = FakeSystem("erp"), FakeSystem("wms")
    held: list[str] = []

    def look(_request: WriteRequest) -> None:  # while the first ERP write is in flight
        with hub.store.unit_of_work() as uow:
            held.extend(d["system"] for d in uow.deliveries.find(state="in_flight"))

    erp.during_write = look
    kinds = [o.kind for o in deliver_many(one_at_a_time, ids, systems(erp, wms), Random(0))]
    assert kinds == ["delivered", "delivered", "busy", "busy"]
    assert sorted(held) == ["erp", "wms"]  # at most one write per system in flight at once
    assert len(erp.requests) == len(wms.requests) == 1


def test_tasks_delivering_at_once_each_write_their_own_and_a_delivery_carried_twice_is_written_once(hub: Hub) -> None:
    """Eight delivery tasks of one worker run at the same moment (threads), and a ninth carries one of their
    deliveries again (the sweeper published it anew): their claims and their outcomes are recorded together, each
    task learns its own outcomes, and every write goes out exactly once."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from hub.usecases.deliver import deliver_many

    tickets = [new_case(hub, f"CASE-{n}", name=f"Ada {n}").ticket_id for n in range(8)]
    batches = [[delivery_to(hub, t, "erp")["id"], delivery_to(hub, t, "wms")["id"]] for t in tickets]
    batches.append([batches[0][0]])
    erp, wms = FakeSystem("erp"), FakeSystem("wms")
    together = threading.Barrier(len(batches))

    def task(ids: list[int]) -> list[str]:
        together.wait(5)
        return [o.kind for o in deliver_many(hub, ids, systems(erp, wms), Random(0))]

    with ThreadPoolExecutor(len(batches)) as pool:
        kinds = list(pool.map(task, batches))
    assert kinds[1:-1] == [["delivered", "delivered"]] * 7
    assert kinds[0][1] == "delivered"
    twice = sorted([kinds[0][0], kinds[-1][0]])  # one task wrote it; the other found it taken or done
    assert twice[0] == "delivered" and twice[1] in ("gone", "in_flight")
    assert sorted(r.ticket_id for r in erp.requests) == sorted(tickets)
    assert sorted(r.ticket_id for r in wms.requests) == sorted(tickets)
    for ids in batches[:-1]:
        for delivery_id in ids:
            assert reload(hub, delivery_id)["state"] == "delivered"
            assert [a["outcome"] for a in attempts(hub, delivery_id)] == ["delivered"]


def test_an_outcome_that_cannot_be_recorded_is_its_own_failure_the_others_of_its_batch_are_recorded(
        hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    """The ERP answers with a record id the hub cannot link (the database refuses), the WMS write of the same
    batch succeeds: the WMS delivery is recorded delivered, the ERP one stays in flight unrecorded (its lease
    ends and it goes out again), with no attempt half-written."""
    from hub.store.tickets import TicketRepository
    from hub.usecases.deliver import deliver_many

    ticket_id = new_case(hub).ticket_id
    erp_id, wms_id = delivery_to(hub, ticket_id, "erp")["id"], delivery_to(hub, ticket_id, "wms")["id"]

    def refuse(self: TicketRepository, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("cannot link")

    monkeypatch.setattr(TicketRepository, "link", refuse)
    erp, wms = FakeSystem("erp", ok("SO-77")), FakeSystem("wms")
    kinds = [o.kind for o in deliver_many(hub, [erp_id, wms_id], systems(erp, wms), Random(0))]
    assert kinds == ["unrecorded", "delivered"]
    assert reload(hub, wms_id)["state"] == "delivered" and [a["outcome"] for a in attempts(hub, wms_id)] == [
        "delivered"]
    assert reload(hub, erp_id)["state"] == "in_flight" and attempts(hub, erp_id) == []
