"""New tickets' global IDs as the events workers assign them: on PostgreSQL from a block of the day's counter
reserved per process (the counter's row is not written in every new ticket's apply), on SQLite one by one in
the apply's own transaction (gap-free, in order). Never the same ID twice, on either."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, select

from hub.bootstrap import Hub, bootstrap
from hub.config import load_settings
from hub.store.engine import make_engine
from hub.store.tables import id_sequences, tickets
from hub.store.unit_of_work import Store
from hub.usecases.ingest import accept_event
from hub.usecases.process import process_event, process_events
from hub.usecases.ticket_ids import ID_BLOCK
from tests.conftest import Clock

T0 = datetime(2026, 2, 13, 9, 0, tzinfo=UTC)


def open_case(hub: Hub, local_id: str) -> str:
    payload = {"local_id": local_id, "modified_at": T0.isoformat(), "author": "agent@example.com",
               "fields": {"contact": {"name": f"Ada {local_id}"}}}
    event_id, _ = accept_event(hub, "crm", f"open-{local_id}", payload)
    result = process_event(hub, event_id)
    assert result.state == "processed" and result.created and result.ticket_id
    return result.ticket_id


def number(ticket_id: str) -> int:
    return int(ticket_id.rsplit("-", 1)[1])


def counter(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(id_sequences.c.last_value)).scalar_one())


def two_processes(engine: Engine, clock: Clock) -> list[Hub]:
    """Two events workers' worth of hub (each its own reserved IDs) on one database."""
    return [bootstrap(load_settings(None, environ={}), engine=engine, clock=clock) for _ in range(2)]


def test_two_workers_taking_turns_each_number_from_their_own_block_on_postgresql_or_in_turn_on_sqlite(
        engine: Engine, clock: Clock) -> None:
    first, second = two_processes(engine, clock)
    ids = [open_case(hub, f"CASE-{n}") for n, hub in enumerate((first, second, first, second, first))]
    assert all(i.startswith("20260213-SVC-") for i in ids)
    if engine.dialect.name == "postgresql":
        assert [number(i) for i in ids] == [1, ID_BLOCK + 1, 2, ID_BLOCK + 2, 3]
        assert counter(engine) == 2 * ID_BLOCK  # two reservations, not five writes of the row
    else:
        assert [number(i) for i in ids] == [1, 2, 3, 4, 5]
        assert counter(engine) == 5


def test_two_workers_opening_tickets_at_once_never_hand_out_the_same_id(engine: Engine, clock: Clock) -> None:
    """Two processes of four threads each open 80 tickets at the same moment."""
    hubs = two_processes(engine, clock)
    found: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def work(hub: Hub, thread: int) -> None:
        try:
            start.wait(10)
            for n in range(10):
                ticket_id = open_case(hub, f"CASE-{id(hub)}-{thread}-{n}")
                with lock:
                    found.append(ticket_id)
        except BaseException as exc:  # noqa: BLE001 (reported by the test)
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(hub, t)) for hub in hubs for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(found) == len(set(found)) == 80
    numbers, last = sorted(number(i) for i in found), counter(engine)
    assert numbers[-1] <= last
    if engine.dialect.name == "postgresql":
        assert last % ID_BLOCK == 0 and last < 80 + 8 * ID_BLOCK  # whole blocks; at most a block a thread unused
    else:
        assert numbers == list(range(1, 81)) and last == 80



def test_two_workers_given_notices_of_the_same_new_cases_at_once_open_one_ticket_each(
        engine: Engine, clock: Clock) -> None:
    """Two processes, two threads each, apply messages of 20 notices (`process_events`) about the same 20 new
    cases, in opposite orders: every notice is applied, each case has one ticket (the losers' IDs are dropped,
    not left as empty tickets), and every notice of a case is on its ticket's history."""
    hubs = two_processes(engine, clock)
    cases = [f"SAME-{n}" for n in range(20)]
    messages = []
    for worker, hub in enumerate(hubs):
        for thread in range(2):
            order = cases if (worker + thread) % 2 == 0 else cases[::-1]
            messages.append((hub, [accept_event(hub, "crm", f"w{worker}t{thread}-{case}", {
                "local_id": case, "modified_at": T0.isoformat(), "author": "agent@example.com",
                "fields": {"contact": {"name": f"Ada {worker}{thread}"}}})[0] for case in order]))
    results: list[object] = []
    start = threading.Barrier(len(messages))

    def work(hub: Hub, event_ids: list[str]) -> None:
        start.wait(10)
        results.extend(process_events(hub, event_ids))

    threads = [threading.Thread(target=work, args=message) for message in messages]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [getattr(r, "state", r) for r in results] == ["processed"] * 80
    with hubs[0].store.unit_of_work() as uow:
        linked = {case: uow.tickets.find_by_xref("crm", case) for case in cases}
        all_tickets = uow.conn.execute(select(tickets.c.ticket_id)).scalars().all()
        histories = {case: {e.event_id for e in uow.tickets.history(ticket_id)} for case, ticket_id in linked.items()}
    assert sorted(all_tickets) == sorted(linked.values()) and len(set(all_tickets)) == 20
    assert all(len(events) == 4 for events in histories.values())


@pytest.mark.integration
def test_a_reserved_block_is_committed_by_itself_and_leaves_the_connection_as_it_found_it(pg_url: str) -> None:
    """PostgreSQL: a block is reserved by one statement that is its own transaction (autocommit), committed
    without waiting for the disk (that setting for its own transaction only); the pooled connection it used is
    handed back transactional again, so the next unit of work on it still rolls back what it does not commit."""
    engine = make_engine(pg_url, pool_size=1, max_overflow=0)  # one connection: the next checkout is the same
    store = Store(engine)
    day = datetime(2026, 2, 13, tzinfo=UTC).date()
    try:
        assert store.reserve_ticket_ids(day, "SVC", 16) == [f"20260213-SVC-{n:05d}" for n in range(1, 17)]
        assert counter(engine) == 16  # committed: seen by the next transaction
        with store.unit_of_work() as uow:
            assert uow.tickets.allocate_ticket_ids(day, "SVC", 5)[-1] == "20260213-SVC-00021"
            # not committed
        assert counter(engine) == 16  # rolled back: the connection is transactional again
        with store.unit_of_work() as uow:
            show = "SELECT current_setting('synchronous_commit')"
            assert uow.conn.exec_driver_sql(show).scalar_one() == "on"
            assert uow.tickets.reserve_ticket_ids(day, "SVC", 4)[0] == "20260213-SVC-00017"
            assert uow.conn.exec_driver_sql(show).scalar_one() == "off"  # for the statement's transaction
            uow.commit()
        with store.unit_of_work() as uow:
            assert uow.conn.exec_driver_sql(show).scalar_one() == "on"  # and no further
    finally:
        engine.dispose()
