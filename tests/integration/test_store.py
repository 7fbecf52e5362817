"""The store on SQLite and on PostgreSQL: IDs, cross-references, state round trip, append-only audit."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from hub.bootstrap import bootstrap
from hub.config import load_settings
from hub.core.apply import apply_changes
from hub.core.errors import ConfigError
from hub.core.model import FieldChange, Provenance
from hub.mapping_files import DEFAULT_DIR, default_systems, load_mappings
from hub.store.engine import make_engine
from hub.store.migrate import is_current, upgrade
from hub.store.unit_of_work import Store

T0 = datetime(2026, 2, 13, 9, 0, tzinfo=UTC)
MAPPINGS = load_mappings(DEFAULT_DIR, default_systems())


def prov(system: str, minutes: int, event: str, author: str = "agent@example.com", rank: int = 50) -> Provenance:
    return Provenance(system, author, rank, 50, T0 + timedelta(minutes=minutes, microseconds=123),
                      T0 + timedelta(minutes=minutes, seconds=1), event)


def test_upgrade_is_idempotent_and_reports_current(engine: Engine) -> None:
    """`db upgrade` on an up-to-date database changes nothing and the schema reads as current."""
    upgrade(engine)
    assert is_current(engine)


def test_same_local_id_always_maps_to_the_same_ticket(engine: Engine) -> None:
    """A system's record is linked to one ticket forever; a new record gets the next ID of the day."""
    store = Store(engine)
    with store.unit_of_work() as uow:
        first, created = uow.tickets.get_or_create("crm", "CASE-1", "SVC", T0)
        again, created_again = uow.tickets.get_or_create("crm", "CASE-1", "SVC", T0 + timedelta(days=3))
        other, _ = uow.tickets.get_or_create("crm", "CASE-2", "SVC", T0)
        uow.commit()
    assert (first, created, again, created_again) == ("20260213-SVC-00001", True, "20260213-SVC-00001", False)
    assert other == "20260213-SVC-00002"
    with store.unit_of_work() as uow:
        assert uow.tickets.find_by_xref("crm", "CASE-1") == first


def test_ids_count_per_day_and_business_code(engine: Engine) -> None:
    """Each (day, business code) has its own sequence starting at 00001."""
    store = Store(engine)
    with store.unit_of_work() as uow:
        ids = [
            uow.tickets.allocate_ticket_id(date(2026, 2, 13), "SVC"),
            uow.tickets.allocate_ticket_id(date(2026, 2, 13), "RMA"),
            uow.tickets.allocate_ticket_id(date(2026, 2, 14), "SVC"),
            uow.tickets.allocate_ticket_id(date(2026, 2, 13), "SVC"),
        ]
        uow.commit()
    assert ids == ["20260213-SVC-00001", "20260213-RMA-00001", "20260214-SVC-00001", "20260213-SVC-00002"]


def test_rolled_back_allocation_leaves_no_ticket(engine: Engine) -> None:
    """A unit of work that is not committed leaves neither ticket nor link behind."""
    store = Store(engine)
    with store.unit_of_work() as uow:
        uow.tickets.get_or_create("crm", "CASE-9", "SVC", T0)
    with store.unit_of_work() as uow:
        assert uow.tickets.find_by_xref("crm", "CASE-9") is None


def _run_threads(count: int, target) -> list[BaseException]:  # type: ignore[no-untyped-def]
    errors: list[BaseException] = []
    barrier = threading.Barrier(count)

    def runner(index: int) -> None:
        try:
            barrier.wait()
            target(index)
        except BaseException as exc:  # collected and re-raised by the test
            errors.append(exc)

    threads = [threading.Thread(target=runner, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_eight_concurrent_allocators_never_hand_out_the_same_id(database_url: str) -> None:
    """Eight allocators racing on one day and code get distinct, gap-free IDs."""
    per_thread, results = 40, []
    lock = threading.Lock()
    engine = make_engine(database_url, pool_size=8, max_overflow=0)

    def allocate(_index: int) -> None:
        store = Store(engine)
        for _ in range(per_thread):
            with store.unit_of_work() as uow:
                ticket_id = uow.tickets.allocate_ticket_id(date(2026, 2, 13), "SVC")
                uow.commit()
            with lock:
                results.append(ticket_id)

    errors = _run_threads(8, allocate)
    engine.dispose()
    assert not errors, errors
    assert len(results) == len(set(results)) == 8 * per_thread
    assert sorted(int(r.rsplit("-", 1)[1]) for r in results) == list(range(1, 8 * per_thread + 1))


def test_concurrent_first_sightings_of_one_record_create_one_ticket(database_url: str) -> None:
    """Eight workers seeing the same new CRM case at once all link it to the same single ticket."""
    engine = make_engine(database_url, pool_size=8, max_overflow=0)
    seen: list[str] = []

    def create(_index: int) -> None:
        with Store(engine).unit_of_work() as uow:
            ticket_id, _ = uow.tickets.get_or_create("crm", "CASE-RACE", "SVC", T0)
            uow.commit()
        seen.append(ticket_id)

    errors = _run_threads(8, create)
    with engine.connect() as conn:
        tickets = conn.execute(text("SELECT count(*) FROM tickets")).scalar_one()
    engine.dispose()
    assert not errors, errors
    assert len(set(seen)) == 1 and tickets == 1


def test_state_round_trips_through_the_store(engine: Engine) -> None:
    """What apply produced is exactly what the store loads back: values, provenance, outbox, echo marks."""
    store = Store(engine)
    with store.unit_of_work() as uow:
        ticket_id, _ = uow.tickets.get_or_create("crm", "CASE-1", "SVC", T0)
        uow.tickets.record_delivered(ticket_id, "erp", {"billing.amount": "10"}, T0)
        before = uow.tickets.load_state(ticket_id)
        result = apply_changes(before, [
            FieldChange("customer.phone", "+44 20 7946 0000", prov("crm", 1, "crm:e1")),
            FieldChange("status", "assigned", prov("crm", 2, "crm:e2")),
            FieldChange("production.progress", 40, prov("mes", 3, "mes:e3", "shopfloor-lead", 70)),
            FieldChange("billing.amount", "12.50", prov("erp", 4, "erp:e4", "accounting", 60)),
            FieldChange("customer.name", "Mallory", prov("erp", 5, "erp:e5", "accounting", 60)),
        ], MAPPINGS)
        uow.tickets.save(before, result, T0)
        uow.commit()
    with store.unit_of_work() as uow:
        loaded = uow.tickets.load_state(ticket_id)
    assert loaded == result.state
    assert loaded.fields["billing.amount"].value == "12.5"
    assert loaded.delivered == {}  # the erp moved on from the value the hub wrote: the echo mark is gone
    assert set(loaded.pending) == {"crm", "erp", "wms"}
    assert loaded.fields["customer.phone"].provenance.modified_at == T0 + timedelta(minutes=1, microseconds=123)


def test_history_keeps_applied_and_rejected_changes_in_order(engine: Engine) -> None:
    """The audit trail lists every change in arrival order, rejections with their author and reason."""
    store = Store(engine)
    with store.unit_of_work() as uow:
        ticket_id, _ = uow.tickets.get_or_create("crm", "CASE-1", "SVC", T0)
        before = uow.tickets.load_state(ticket_id)
        result = apply_changes(before, [
            FieldChange("customer.phone", "111111", prov("crm", 1, "crm:e1")),
            FieldChange("production.progress", 90, prov("crm", 2, "crm:e2", "agent@example.com")),
            FieldChange("customer.phone", "222222", prov("crm", 0, "crm:e0")),
        ], MAPPINGS)
        uow.tickets.save(before, result, T0)
        uow.commit()
    with store.unit_of_work() as uow:
        history = uow.tickets.history(ticket_id)
    assert [(h.field, h.outcome, h.new_value) for h in history][:1] == [("customer.phone", "applied", "111111")]
    rejected = [(h.field, h.outcome, h.author) for h in history if h.outcome not in ("applied",)]
    assert ("production.progress", "not_owner", "agent@example.com") in rejected
    assert ("customer.phone", "stale", "agent@example.com") in rejected
    assert [h.id for h in history] == sorted(h.id for h in history)


@pytest.mark.parametrize("statement", [
    "UPDATE audit_log SET new_value = '\"forged\"'",
    "DELETE FROM audit_log",
])
def test_audit_log_refuses_update_and_delete(engine: Engine, statement: str) -> None:
    """Nobody, not even SQL typed by hand, can rewrite or erase the audit trail."""
    store = Store(engine)
    with store.unit_of_work() as uow:
        ticket_id, _ = uow.tickets.get_or_create("crm", "CASE-1", "SVC", T0)
        before = uow.tickets.load_state(ticket_id)
        result = apply_changes(before, [FieldChange("customer.phone", "111111", prov("crm", 1, "crm:e1"))], MAPPINGS)
        uow.tickets.save(before, result, T0)
        uow.commit()
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(text(statement))
    with store.unit_of_work() as uow:
        assert [h.new_value for h in uow.tickets.history(ticket_id)] == ["111111"]


def test_repository_offers_no_way_to_change_history() -> None:
    """No code in the store issues UPDATE or DELETE against the audit log."""
    import hub.store

    for module in Path(hub.store.__file__).parent.glob("*.py"):
        source = module.read_text()
        assert "update(audit_log" not in source and "delete(audit_log" not in source, module.name
    assert "insert(audit_log" in (Path(hub.store.__file__).parent / "tickets.py").read_text()  # it does write it


def test_inbox_accepts_an_event_once(engine: Engine) -> None:
    """The same (system, event id) delivered twice is stored once and reported as a duplicate."""
    store = Store(engine)
    with store.unit_of_work() as uow:
        first = uow.inbox.accept("crm", "evt-1", {"a": 1}, T0)
        second = uow.inbox.accept("crm", "evt-1", {"a": 2}, T0)
        uow.commit()
    with store.unit_of_work() as uow:
        stored = uow.inbox.get("crm:evt-1")
    assert first == ("crm:evt-1", False) and second == ("crm:evt-1", True)
    assert stored is not None and stored["payload"] == {"a": 1}


@pytest.mark.parametrize("anywhere", [False, True])
def test_work_of_many_threads_run_together_keeps_each_result_and_each_failure_apart(engine: Engine,
                                                                                     anywhere: bool) -> None:
    """`Store.together` (group commit on SQLite, and with `anywhere` on PostgreSQL too): 48 threads store
    events at once; each gets its own answer, the one whose work fails after writing gets its own error and
    leaves nothing, the rest are all kept, and a duplicate racing its original is reported as one."""
    store = Store(engine)
    answers: dict[int, tuple[str, bool] | ValueError] = {}

    def accept(index: int) -> None:
        def work(uow: Any) -> tuple[str, bool]:
            stored = uow.inbox.accept("crm", f"evt-{index % 40}", {"n": index}, T0)
            if index == 7:
                raise ValueError("refused after writing")
            return stored  # type: ignore[no-any-return]

        try:
            answers[index] = store.together(work, anywhere=anywhere)
        except ValueError as exc:
            answers[index] = exc

    errors = _run_threads(48, accept)
    assert not errors, errors
    assert isinstance(answers.pop(7), ValueError)
    with store.unit_of_work() as uow:
        stored = {i: uow.inbox.get(f"crm:evt-{i}") for i in range(40)}
    assert stored[7] is None or stored[7]["payload"] == {"n": 47}  # only its twin (47) may have stored evt-7
    assert all(stored[i] is not None for i in range(40) if i != 7)
    for index, answer in answers.items():
        assert not isinstance(answer, ValueError) and answer[0] == f"crm:evt-{index % 40}"
        original = stored[index % 40]
        if original is not None:
            assert answer[1] == (original["payload"] != {"n": index})


def test_the_connection_budget_per_process_is_configurable(tmp_path: Path) -> None:
    """[hub] database_pool_size / database_max_overflow bound the connections a hub process holds, so a
    team can run more workers within PostgreSQL's max_connections; a negative budget is refused."""
    config = tmp_path / "tickethub.toml"
    config.write_text(f'[hub]\ndatabase_url = "sqlite:///{tmp_path / "hub.db"}"\n'
                      "database_pool_size = 3\ndatabase_max_overflow = 0\n")
    hub = bootstrap(load_settings(config, environ={}))
    upgrade(hub.engine)
    held = [hub.engine.connect() for _ in range(3)]
    assert hub.engine.pool.size() == 3 and hub.engine.pool.checkedout() == 3  # the default would be 10
    for conn in held:
        conn.close()
    config.write_text("[hub]\ndatabase_max_overflow = -1\n")
    with pytest.raises(ConfigError, match="database_max_overflow"):
        load_settings(config, environ={})


# ---- PostgreSQL: transactions that cross -----------------------------------------------------------

@pytest.mark.integration
def test_a_delivery_outcome_is_recorded_while_an_event_holds_its_ticket(pg_url: str) -> None:
    """An event holds its ticket while it applies (events for one ticket take turns), and may wait meanwhile
    for a delivery of that ticket to finish; that delivery's outcome must not wait for the event in turn
    (its foreign keys to the ticket), or PostgreSQL aborts one of them as a deadlock."""
    engine = make_engine(pg_url)
    store = Store(engine)
    try:
        with store.unit_of_work() as uow:
            ticket, _ = uow.tickets.get_or_create("crm", "CASE-1", "SVC", T0)
            uow.commit()
        outcome: list[BaseException | None] = []

        def record_outcome() -> None:
            try:
                with store.unit_of_work() as uow:
                    uow.conn.execute(text("SET LOCAL lock_timeout = '3s'"))
                    uow.tickets.record_delivered(ticket, "erp", {"customer_phone": "+44 20 7946 0000"}, T0)
                    uow.commit()
                outcome.append(None)
            except BaseException as exc:  # noqa: BLE001 (the assertion below shows it)
                outcome.append(exc)

        with store.unit_of_work() as event:
            event.tickets.lock(ticket)
            recorder = threading.Thread(target=record_outcome)
            recorder.start()
            recorder.join(10)
            assert outcome == [None], outcome  # recorded while the event still holds the ticket
        with store.unit_of_work() as uow:
            assert uow.tickets.load_state(ticket).delivered == {"erp": {"customer_phone": "+44 20 7946 0000"}}
    finally:
        engine.dispose()


@pytest.mark.integration
def test_a_work_postgresql_aborts_to_break_a_deadlock_runs_again_and_succeeds(pg_url: str) -> None:
    """`Store.together`: a work chosen as a deadlock's victim is not failed back to its caller (a delivery
    already sent, then its outcome lost, is sent again): it runs again once the other transaction is through."""
    engine = make_engine(pg_url)
    store = Store(engine)
    try:
        with store.unit_of_work() as uow:
            first, _ = uow.tickets.get_or_create("crm", "CASE-1", "SVC", T0)
            second, _ = uow.tickets.get_or_create("crm", "CASE-2", "SVC", T0)
            uow.commit()
        lock = text("SELECT ticket_id FROM tickets WHERE ticket_id = :t FOR UPDATE")
        other_has_first, work_has_second = threading.Event(), threading.Event()
        runs: list[int] = []

        def other() -> None:  # takes the first ticket, then the second: the opposite order to the work's
            with engine.connect() as conn, conn.begin():
                conn.execute(text("SET LOCAL deadlock_timeout = '10s'"))  # so that the work is the victim
                conn.execute(lock, {"t": first})
                other_has_first.set()
                work_has_second.wait(10)
                conn.execute(lock, {"t": second})

        def work(uow: Any) -> str:
            runs.append(1)
            uow.conn.execute(text("SET LOCAL deadlock_timeout = '100ms'"))
            uow.conn.execute(lock, {"t": second})
            if len(runs) == 1:
                work_has_second.set()
            uow.conn.execute(lock, {"t": first})
            return "done"

        thread = threading.Thread(target=other)
        thread.start()
        assert other_has_first.wait(10)
        assert store.together(work) == "done"
        thread.join(10)
        assert len(runs) == 2  # aborted once, then through
    finally:
        engine.dispose()


def test_rows_written_many_at_a_time_read_back_as_one_at_a_time(engine: Engine) -> None:
    """The store's one-statement writes (the event apply's) keep what a row-at-a-time INSERT keeps: JSON values
    nested, null and non-ASCII, numbers of any size (beyond 64 bits too); datetimes of any zone as the same instant
    in UTC; on a key written twice, the last row; ON CONFLICT DO NOTHING saying which rows went in."""
    from sqlalchemy import insert, select
    from sqlalchemy.exc import StatementError

    from hub.store.dialect import insert_many
    from hub.store.tables import outbox, xrefs

    store = Store(engine)
    with store.unit_of_work() as uow:
        one, _ = uow.tickets.get_or_create("crm", "ONE", "SVC", T0)
        many, _ = uow.tickets.get_or_create("crm", "MANY", "SVC", T0)
        uow.commit()
    beijing = timezone(timedelta(hours=8))
    rows = [{"system": "erp", "field": "contact", "value": {"name": "王芳", "tags": [1, None, "x", 0.1, 2**70]},
             "system_field": "party.name", "system_value": None, "provenance": {"at": T0.isoformat()},
             "queued_at": T0.astimezone(beijing)},
            {"system": "mes", "field": "status", "value": None, "system_field": "state", "system_value": "done",
             "provenance": {}, "queued_at": T0 + timedelta(microseconds=7)}]
    with engine.begin() as conn:
        for row in rows:
            conn.execute(insert(outbox), {"ticket_id": one, **row})
        insert_many(conn, outbox, [{"ticket_id": many, **row, "value": "older"} for row in rows])
        insert_many(conn, outbox, [{"ticket_id": many, **row, "value": "stale"} for row in rows]
                    + [{"ticket_id": many, **row} for row in rows], on_conflict="update")

    def read(ticket_id: str) -> list[tuple[Any, ...]]:
        with engine.connect() as conn:
            found = conn.execute(select(outbox).where(outbox.c.ticket_id == ticket_id).order_by(outbox.c.system))
            nulls = conn.execute(select(outbox.c.value.is_(None), outbox.c.system_value.is_(None))
                                 .where(outbox.c.ticket_id == ticket_id).order_by(outbox.c.system))
            return [(*row[1:], *isnull) for row, isnull in zip(found, nulls, strict=True)]

    assert read(many) == read(one)
    assert read(many)[0][6] == T0
    with engine.begin() as conn:
        taken = insert_many(conn, xrefs, [{"system": "crm", "local_id": "MANY", "ticket_id": one, "created_at": T0},
                                          {"system": "erp", "local_id": "E-1", "ticket_id": one, "created_at": T0}],
                            on_conflict="nothing", returning=("system", "local_id"))
        assert [tuple(row) for row in taken] == [("erp", "E-1")]
        with pytest.raises((ValueError, StatementError), match="naive datetime"):
            insert_many(conn, xrefs, [{"system": "wms", "local_id": "W-1", "ticket_id": one,
                                       "created_at": T0.replace(tzinfo=None)}])
    with store.unit_of_work() as uow:
        assert uow.tickets.find_by_xref("crm", "MANY") == many


def test_the_reconcilers_view_of_golden_values_keeps_integers_of_any_size(engine: Engine) -> None:
    """The compare's fast read of golden values (on SQLite, orjson over the stored JSON text) gives what the typed
    read gives: an integer beyond 64 bits inside a value stays that integer (orjson alone reads it as a float, the
    compare would see drift and the repair would write the float back); digits in a string stay a string."""
    from sqlalchemy import insert

    from hub.store.tables import field_values

    store = Store(engine)
    values = {"counts": {"big": 2**70, "below": -(2**63) - 1, "edge": 2**64 - 1, "list": [10**25, 1.5]},
              "tracking": {"number": "12345678901234567890123"}, "plain": {"n": 7}}
    with store.unit_of_work() as uow:
        ticket, _ = uow.tickets.get_or_create("crm", "BIG", "SVC", T0)
        uow.conn.execute(insert(field_values), [
            {"ticket_id": ticket, "field": name, "value": value, "source_system": "crm", "author": "a",
             "author_rank": 1, "system_rank": 1, "source_modified_at": T0, "received_at": T0, "event_id": "e-1"}
            for name, value in values.items()])
        uow.commit()
    with store.unit_of_work() as uow:
        typed = uow.tickets.golden_values([ticket])[ticket]
        fast, _prints = uow.reconcile.compare_view(0, [ticket])
    assert typed == values
    assert fast[ticket] == values
    assert all(type(n) is int for n in fast[ticket]["counts"].values() if not isinstance(n, list))


def test_json_values_written_many_at_a_time_read_back_whichever_row_comes_first(engine: Engine) -> None:
    """A one-statement write reads its rows as jsonb where the first row's JSON values hold an object or a list
    and as json otherwise (the cheaper way for each): either way each row's values come back as a row-at-a-time
    write stores them, objects, lists and scalars alike."""
    from sqlalchemy import insert, select

    from hub.store.dialect import insert_many, update_many
    from hub.store.tables import field_values, inbox_events

    store = Store(engine)
    with store.unit_of_work() as uow:
        ids = [uow.tickets.get_or_create("crm", f"J-{n}", "SVC", T0)[0] for n in range(4)]
        uow.commit()
    values: list[Any] = ["text", {"name": "王芳", "tags": [1, None, 2**70]}, [1, "two", {"x": 0.5}], None, 7]

    def row(ticket_id: str, field: str, value: Any) -> dict[str, Any]:
        return {"ticket_id": ticket_id, "field": field, "value": value, "source_system": "crm", "author": "a",
                "author_rank": 1, "system_rank": 1, "source_modified_at": T0, "received_at": T0, "event_id": "e"}

    with engine.begin() as conn:
        for n, value in enumerate(values):
            conn.execute(insert(field_values), row(ids[0], f"f{n}", value))
        insert_many(conn, field_values, [row(ids[1], f"f{n}", value) for n, value in enumerate(values)])
        insert_many(conn, field_values, [row(ids[2], f"f{n}", value) for n, value in reversed(list(enumerate(values)))])
        rotated = values[1:] + values[:1]  # written over below, first row an object this time
        insert_many(conn, field_values, [row(ids[3], f"f{n}", value) for n, value in enumerate(rotated)])
        insert_many(conn, field_values, [row(ids[3], f"f{n}", value) for n, value in enumerate(values)],
                    on_conflict="update")
        events = [{"event_id": f"crm:e{n}", "system": "crm", "external_id": f"e{n}", "received_at": T0,
                   "payload": {"n": n}, "state": "received"} for n in range(2)]
        conn.execute(insert(inbox_events), events)
        update_many(conn, inbox_events, "event_id", [{"event_id": "crm:e0", "payload": "plain"},
                                                     {"event_id": "crm:e1", "payload": {"n": [2**70]}}])
        update_many(conn, inbox_events, "event_id", [{"event_id": "crm:e1", "payload": {"n": [2**70]}},
                                                     {"event_id": "crm:e0", "payload": "plain"}])

    def read(ticket_id: str) -> list[tuple[str, Any]]:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(select(field_values.c.field, field_values.c.value)
                                                   .where(field_values.c.ticket_id == ticket_id)
                                                   .order_by(field_values.c.field))]

    assert read(ids[0]) == [(f"f{n}", value) for n, value in enumerate(values)]
    assert read(ids[1]) == read(ids[2]) == read(ids[3]) == read(ids[0])
    with engine.connect() as conn:
        payloads = {r.event_id: r.payload
                    for r in conn.execute(select(inbox_events.c.event_id, inbox_events.c.payload))}
    assert payloads == {"crm:e0": "plain", "crm:e1": {"n": [2**70]}}


def test_records_are_looked_up_by_key_not_by_reading_every_link_of_their_system(pg_url: str) -> None:
    """PostgreSQL: finding the tickets of a set's records reads their links through the primary key, one lookup
    each, however many links the system has and whatever the planner's statistics say (as an IN list of pairs it
    read every link of the system while the statistics lagged behind a burst of new tickets, and scanned a bitmap
    of them after)."""
    import json

    from sqlalchemy import event

    from hub.store.dialect import insert_many
    from hub.store.tables import tickets, xrefs

    engine = make_engine(pg_url)
    seen: list[tuple[str, Any]] = []
    try:
        with engine.begin() as conn:
            insert_many(conn, tickets, [{"ticket_id": f"T-{n}", "business_code": "SVC", "created_at": T0,
                                         "updated_at": T0} for n in range(2000)])
            insert_many(conn, xrefs, [{"system": "crm", "local_id": f"L-{n}", "ticket_id": f"T-{n}",
                                       "created_at": T0} for n in range(2000)])
        for analyzed in (False, True):
            if analyzed:
                with engine.begin() as conn:
                    conn.execute(text("ANALYZE xrefs"))
            keys = [("crm", f"L-{n}") for n in range(500, 520)] + [("crm", "NEW-1"), ("erp", "L-1")]

            def capture(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
                seen.append((statement, parameters))

            event.listen(engine, "before_cursor_execute", capture)
            with Store(engine).unit_of_work() as uow:
                found = uow.tickets.find_xrefs(keys)
            event.remove(engine, "before_cursor_execute", capture)
            assert found == {("crm", f"L-{n}"): f"T-{n}" for n in range(500, 520)}
            statement, parameters = seen[-1]
            with engine.connect() as conn:
                plan = conn.exec_driver_sql("EXPLAIN (ANALYZE, FORMAT JSON) " + statement, parameters).scalar_one()
            plan = json.loads(plan) if isinstance(plan, str) else plan

            def nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
                return [node] + [n for child in node.get("Plans", []) for n in nodes(child)]

            reads = [n for n in nodes(plan[0]["Plan"]) if n.get("Relation Name") == "xrefs"]
            assert reads, plan
            for read in reads:
                assert read["Node Type"] in ("Index Scan", "Index Only Scan"), (analyzed, read)
                assert read.get("Rows Removed by Filter", 0) == 0, (analyzed, read)
                assert read["Actual Rows"] * read["Actual Loops"] <= len(keys), (analyzed, read)
    finally:
        engine.dispose()
