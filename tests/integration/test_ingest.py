"""Events through the inbox into the golden record: creation, linking, rejection, idempotence."""

from __future__ import annotations

import itertools
import shutil
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.bootstrap import Hub, bootstrap
from hub.config import load_settings
from hub.core.ports import SourceRecord
from hub.store.engine import make_engine
from hub.usecases import process as services
from hub.usecases.ingest import accept_event
from hub.usecases.process import process_event

T0 = datetime(2026, 2, 13, 9, 0, tzinfo=UTC)


def crm_case(minutes: int, **fields: object) -> dict[str, object]:
    return {"local_id": "CASE-1", "modified_at": (T0 + timedelta(minutes=minutes)).isoformat(),
            "author": "agent@example.com", "fields": fields}


def submit(hub: Hub, system: str, external_id: str, payload: object):  # type: ignore[no-untyped-def]
    event_id, _ = accept_event(hub, system, external_id, payload)
    return process_event(hub, event_id)


def test_a_new_crm_case_gets_a_global_ticket_id_dated_when_the_hub_heard(hub: Hub) -> None:
    """The first event of an origin system creates a ticket named after the day the hub received it."""
    result = submit(hub, "crm", "e1", crm_case(0, contact={"name": "Ada", "phone": "+44 1"}, case={"status": "New"}))
    assert result.state == "processed" and result.created
    assert result.ticket_id == "20260213-SVC-00001"
    with hub.store.unit_of_work() as uow:
        view = uow.tickets.get(result.ticket_id)
    assert view.fields["customer.name"].value == "Ada"
    assert view.fields["status"].value == "new"
    assert view.fields["customer.name"].provenance.author_rank == 50  # agent@example.com in crm.toml


def test_processing_an_event_twice_changes_nothing(hub: Hub) -> None:
    """A redelivered task finds the event processed and leaves record, history and outbox alone."""
    event_id, _ = accept_event(hub, "crm", "e1", crm_case(0, contact={"phone": "+44 1"}))
    first = process_event(hub, event_id)
    with hub.store.unit_of_work() as uow:
        before = (uow.tickets.load_state(first.ticket_id), uow.tickets.history(first.ticket_id))
    again = process_event(hub, event_id)
    with hub.store.unit_of_work() as uow:
        after = (uow.tickets.load_state(first.ticket_id), uow.tickets.history(first.ticket_id))
    assert again.state == "already processed"
    assert before == after


def test_events_processed_together_match_one_by_one_and_a_failing_one_is_left_alone(
        hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    """`process_events` (a message's events applied together in one transaction; if that fails, each alone): two
    notices of one new case make one ticket with the newer name, the notice of a case whose apply breaks
    halfway stays received and leaves no ticket, the others get IDs in order, and an event named twice in the
    message is processed once."""
    notices = [("n1", "CASE-1", 5, "Grace"), ("n2", "CASE-1", 0, "Ada"), ("n3", "CASE-2", 0, "Bob"),
               ("n4", "CASE-3", 0, "Cy")]
    ids = [accept_event(hub, "crm", external, {**crm_case(minute, contact={"name": name}), "local_id": case})[0]
           for external, case, minute, name in notices]
    weigh = services._weigh

    def breaks_on_case_2(hub: Hub, record: SourceRecord, *args: object) -> object:
        done = weigh(hub, record, *args)
        if record.local_id == "CASE-2":
            raise RuntimeError("disk I/O error")
        return done

    monkeypatch.setattr(services, "_weigh", breaks_on_case_2)
    results = services.process_events(hub, [*ids, ids[0]])

    assert [getattr(r, "state", type(r).__name__) for r in results] == [
        "processed", "processed", "RuntimeError", "processed", "processed"]
    assert results[4] is results[0]  # named twice, processed once
    with hub.store.unit_of_work() as uow:
        assert [uow.inbox.get(i)["state"] for i in ids] == ["processed", "processed", "received", "processed"]
        tickets = {case: uow.tickets.find_by_xref("crm", case) for case in ("CASE-1", "CASE-2", "CASE-3")}
        assert tickets["CASE-2"] is None
        assert uow.tickets.get(tickets["CASE-1"]).fields["customer.name"].value == "Grace"
    assert tickets["CASE-1"] < tickets["CASE-3"]


def test_a_message_mixing_kinds_of_event_gives_each_what_it_would_get_alone(hub: Hub) -> None:
    """One message: a new case, a malformed notice, an ERP order no ticket links to, an event processed before, a
    linked ERP order, and a second notice of the new case. Each ends as it would alone (processed, rejected with
    the reason, orphan with the reason, left alone), the ERP's amount and the newer name are on the tickets, and
    the new case's deliveries are published once, with the event that opened it."""
    known = submit(hub, "crm", "e0", crm_case(0, contact={"name": "Known"}) | {"local_id": "CASE-0"}).ticket_id
    with hub.store.unit_of_work() as uow:
        uow.tickets.link(known, "erp", "SO-0", T0)
        uow.commit()
    erp = {"modified_at": (T0 + timedelta(minutes=1)).isoformat(), "author": "accounting",
           "fields": {"sale": {"total_amount": "149.90"}}}
    message = [accept_event(hub, system, external, payload)[0] for system, external, payload in [
        ("crm", "e1", crm_case(0, contact={"name": "Ada"})),
        ("crm", "e2", {"local_id": "CASE-9", "author": "x", "fields": {}}),
        ("erp", "e3", {"local_id": "SO-9", **erp}),
        ("crm", "e0", {}),  # the same webhook again: the event processed above
        ("erp", "e4", {"local_id": "SO-0", **erp}),
        ("crm", "e5", crm_case(5, contact={"name": "Ada Lovelace"})),
    ]]

    results = services.process_events(hub, message)

    states = [getattr(r, "state", r) for r in results]
    assert states == ["processed", "rejected", "orphan", "already processed", "processed", "processed"]
    assert "modified_at" in (results[1].error or "") and "not a ticket origin" in (results[2].error or "")
    assert results[0].created and not results[5].created and results[0].ticket_id == results[5].ticket_id
    assert results[0].deliveries and not results[5].deliveries
    with hub.store.unit_of_work() as uow:
        assert [uow.inbox.get(i)["state"] for i in message] == [  # type: ignore[index]
            "processed", "rejected", "orphan", "processed", "processed", "processed"]
        assert uow.tickets.get(results[0].ticket_id).fields["customer.name"].value == "Ada Lovelace"
        assert uow.tickets.get(known).fields["billing.amount"].value == "149.9"
        assert uow.tickets.find_by_xref("erp", "SO-9") is None
        history = [(h.event_id, h.field, h.outcome) for h in uow.tickets.history(results[0].ticket_id)]
    assert history == [("crm:e1", "customer.name", "applied"), ("crm:e5", "customer.name", "applied")]


def test_a_duplicate_event_id_is_accepted_once(hub: Hub) -> None:
    """The same webhook id delivered again is reported as a duplicate and stored once."""
    assert accept_event(hub, "crm", "e1", crm_case(0)) == ("crm:e1", False)
    assert accept_event(hub, "crm", "e1", crm_case(5)) == ("crm:e1", True)
    with hub.store.unit_of_work() as uow:
        assert uow.inbox.count() == 1


def test_a_record_of_a_non_origin_system_without_link_is_an_orphan(hub: Hub) -> None:
    """An ERP order that no ticket links to is kept as an orphan event, with the reason, and creates nothing."""
    result = submit(hub, "erp", "e1", {"local_id": "SO-1", "modified_at": T0.isoformat(), "author": "accounting",
                                       "fields": {"sale": {"total_amount": "10"}}})
    assert result.state == "orphan" and "not a ticket origin" in (result.error or "")
    with hub.store.unit_of_work() as uow:
        assert uow.inbox.get("erp:e1")["state"] == "orphan"  # type: ignore[index]
        assert uow.tickets.find_by_xref("erp", "SO-1") is None


def test_a_linked_erp_order_updates_what_the_erp_owns(hub: Hub) -> None:
    """Once linked, the ERP's billing reaches the ticket and is queued for the CRM, which subscribes to it."""
    ticket_id = submit(hub, "crm", "e1", crm_case(0, contact={"name": "Ada"})).ticket_id
    with hub.store.unit_of_work() as uow:
        uow.tickets.link(ticket_id, "erp", "SO-1", T0)
        uow.commit()
    result = submit(hub, "erp", "e2", {"local_id": "SO-1", "modified_at": (T0 + timedelta(minutes=1)).isoformat(),
                                       "author": "accounting", "fields": {"sale": {"total_amount": "149.90"}}})
    assert [o.kind for o in result.outcomes] == ["applied"]
    with hub.store.unit_of_work() as uow:
        pending = {(p["system"], p["field"]): p["system_value"] for p in uow.tickets.pending_writes()}
    assert pending[("crm", "billing.amount")] == "149.9"
    assert ("erp", "billing.amount") not in pending


def test_a_value_the_mapping_cannot_translate_is_recorded_and_the_rest_applied(hub: Hub) -> None:
    """A CRM status the mapping does not know is rejected as invalid_value; the other fields still apply."""
    result = submit(hub, "crm", "e1", crm_case(0, contact={"name": "Ada"}, case={"status": "Escalated"}))
    kinds = {o.change.field: o.kind for o in result.outcomes}
    assert kinds == {"status": "invalid_value", "customer.name": "applied"}
    with hub.store.unit_of_work() as uow:
        history = uow.tickets.history(result.ticket_id)
    rejected = [h for h in history if h.outcome == "invalid_value"]
    assert rejected[0].new_value == "Escalated" and "Escalated" in rejected[0].reason


def test_a_malformed_payload_is_rejected_with_what_is_wrong(hub: Hub) -> None:
    """A payload missing modified_at is kept, marked rejected, with a message that names the field."""
    result = submit(hub, "crm", "e1", {"local_id": "CASE-1", "author": "x", "fields": {}})
    assert result.state == "rejected" and "modified_at" in (result.error or "")


def test_the_hub_hears_its_own_write_back_as_an_echo(hub: Hub) -> None:
    """After the hub wrote a phone to the WMS, the WMS reporting that phone is an echo, not a change."""
    ticket_id = submit(hub, "crm", "e1", crm_case(0, contact={"phone": "+44 1"})).ticket_id
    with hub.store.unit_of_work() as uow:
        uow.tickets.link(ticket_id, "wms", "SHP-1", T0)
        uow.tickets.record_delivered(ticket_id, "wms", {"customer.phone": "+44 1"}, T0)
        uow.commit()
    result = submit(hub, "wms", "e2", {
        "local_id": "SHP-1", "modified_at": (T0 + timedelta(minutes=2)).isoformat(), "author": "warehouse-lead",
        "fields": {"shipment": {"recipient_phone": "+44 1"}}})
    assert [o.kind for o in result.outcomes] == ["echo"]


# ---- order-insensitivity through the real store ------------------------------------------------------

EVENTS = [
    ("crm", "c1", crm_case(0, contact={"name": "Ada", "phone": "+44 1"}, case={"status": "New"})),
    ("crm", "c2", crm_case(3, contact={"phone": "+44 2"})),
    ("crm", "c3", crm_case(3, contact={"phone": "+44 3"}, case={"status": "Assigned", "repair_progress": 50})),
    ("crm", "c4", {**crm_case(3, contact={"phone": "+44 4"}), "author": "supervisor@example.com"}),
    ("crm", "c5", crm_case(1, contact={"phone": "call me", "name": "Ada L."})),
    ("mes", "m1", {"local_id": "MO-1", "modified_at": (T0 + timedelta(minutes=2)).isoformat(),
                   "author": "shopfloor-lead", "fields": {"production": {"percent_done": 40}}}),
    ("mes", "m2", {"local_id": "MO-1", "modified_at": (T0 + timedelta(minutes=2)).isoformat(),
                   "author": "intern", "fields": {"production": {"percent_done": 45}}}),
]


def _run(template: Path, workdir: Path, order: list[int], cuts: set[int] | None = None) -> tuple[object, object]:
    """The ticket's fields and outbox after EVENTS in `order`, each processed alone, or (with `cuts`) processed
    together as a task does, in messages split before those positions."""
    db = workdir / f"run-{uuid.uuid4().hex}.db"
    shutil.copy(template, db)
    engine = make_engine(f"sqlite:///{db}")
    hub = bootstrap(load_settings(None, environ={}), engine=engine, clock=lambda: T0)
    with hub.store.unit_of_work() as uow:  # the ticket and the MES link exist before events arrive
        ticket_id, _ = uow.tickets.get_or_create("crm", "CASE-1", "SVC", T0)
        uow.tickets.link(ticket_id, "mes", "MO-1", T0)
        uow.commit()
    message: list[str] = []
    for position, index in enumerate(order):
        system, external_id, payload = EVENTS[index]
        if cuts is None:
            submit(hub, system, external_id, payload)
            continue
        if position in cuts and message:
            services.process_events(hub, message)
            message = []
        message.append(accept_event(hub, system, external_id, payload)[0])
    if message:
        assert all(getattr(r, "state", "") != "" for r in services.process_events(hub, message))
    with hub.store.unit_of_work() as uow:
        state = uow.tickets.load_state(ticket_id)
    engine.dispose()
    return state.fields, state.pending


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(order=st.permutations(range(len(EVENTS))), repeats=st.lists(st.integers(0, len(EVENTS) - 1), max_size=4))
def test_any_order_with_redeliveries_gives_the_same_record_and_outbox(
    sqlite_template: Path, tmp_path_factory, order: list[int], repeats: list[int]  # type: ignore[no-untyped-def]
) -> None:
    """Events applied through the store in any order, some delivered twice, leave one and the same state."""
    workdir = tmp_path_factory.mktemp("orders")
    expected = _run(sqlite_template, workdir, list(range(len(EVENTS))))
    shuffled = list(order)
    for position, index in enumerate(repeats):
        shuffled.insert(position * 2 % (len(shuffled) + 1), index)
    assert _run(sqlite_template, workdir, shuffled) == expected


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(order=st.permutations(range(len(EVENTS))), repeats=st.lists(st.integers(0, len(EVENTS) - 1), max_size=4),
       cuts=st.sets(st.integers(1, len(EVENTS) + 3)))
def test_events_applied_together_in_any_order_and_messages_give_the_record_and_outbox_of_one_by_one(
    sqlite_template: Path, tmp_path_factory, order: list[int], repeats: list[int], cuts: set[int]  # type: ignore[no-untyped-def]
) -> None:
    """A task's events are applied in one transaction, each weighed on the state the ones before it left: any
    order, any split into messages, redeliveries within and across messages, the same state as one by one."""
    workdir = tmp_path_factory.mktemp("together")
    expected = _run(sqlite_template, workdir, list(range(len(EVENTS))))
    shuffled = list(order)
    for position, index in enumerate(repeats):
        shuffled.insert(position * 2 % (len(shuffled) + 1), index)
    assert _run(sqlite_template, workdir, shuffled, cuts) == expected


def test_every_pair_order_of_competing_phone_edits_agrees(sqlite_template: Path, tmp_path: Path) -> None:
    """All orders of the three same-minute phone edits pick the supervisor's (higher author rank)."""
    results = {str(_run(sqlite_template, tmp_path, list(p))[0]["customer.phone"].value)  # type: ignore[index]
               for p in itertools.permutations([1, 2, 3])}
    assert results == {"+44 4"}
