"""The store and its unit of work: one database transaction, rolled back unless `commit()` was called, with
the repositories (tickets, inbox, deliveries, polls) on its connection; and group commit (`Store.together`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from datetime import date
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection, Engine, text

from hub.store.alerts import AlertRepository
from hub.store.combine import Combiner
from hub.store.deliveries import DeliveryRepository
from hub.store.engine import SqliteWriteLock, retrying
from hub.store.inbox import InboxRepository
from hub.store.polls import PollRepository
from hub.store.reconcile import ReconcileRepository
from hub.store.stats import StatsRepository
from hub.store.tickets import TicketRepository

T = TypeVar("T")


class Store:
    """Hands out units of work on one engine.

    On SQLite every transaction takes the database's one write lock (BEGIN IMMEDIATE), and a transaction
    that finds it taken polls for it with growing sleeps (up to 100 ms each). Threads and processes
    therefore queue for it on `SqliteWriteLock` first, and are woken the moment it is free."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self._writer = SqliteWriteLock(engine.url.database) if engine.dialect.name == "sqlite" else None
        # together(): the work of this process's threads, run by one of them at a time
        self._combined: Combiner[_Work[Any], _Work[Any]] = Combiner(self._run_together, TOGETHER_MAX)

    def together(self, work: Callable[[UnitOfWork], T], *, anywhere: bool = False) -> T:
        """Run `work` in a transaction and commit it; return what it returned, or raise what it raised
        (then nothing it did is kept). `work` must not commit.

        On SQLite the work that threads of this process have waiting runs in one transaction (group commit,
        `hub.store.combine`): one thread at a time leads, running what is waiting (up to TOGETHER_MAX works, and
        for TOGETHER_SECONDS of the write lock at most) while the others sleep until theirs is done or the lead
        is handed to them.
        The deliveries worker's 128 threads each took the write lock twice per write, and queueing for it,
        taking it and committing cost more than the statements (bench/pipeline.py, end to end at 100/s: the
        lock busy ~77% of the time for ~240 writes a second); the API's threads storing webhooks likewise
        (intake alone, two runs in turn each: 1,014 and 1,096 webhooks/s at 0.94-1.02 ms of CPU each, one
        transaction a webhook; 1,457 and 1,522/s at 0.69-0.71 ms, together). If any work raises, the
        transaction is rolled back and each runs again alone, so that one work's failure is its own.

        On PostgreSQL (concurrent writers) each work is a unit of work of its own, unless `anywhere`: then
        works are combined there too, which saves each its round trips and its commit. Only for work whose
        locks two transactions cannot take in opposite orders in the normal course: storing webhooks
        (unique keys). A deadlock that still happens (the same webhook IDs crossed at two API processes) is
        broken by PostgreSQL, and the works of the transaction it aborts run again alone. (Deliveries used to be
        combined here too, each work's statements one after another; now the deliveries worker's threads hand
        their claims, and their outcomes, to one run that does them all in a few statements:
        `hub.usecases.deliver`.)"""
        return self._together([_Work(work)], anywhere)[0].outcome()

    def _together(self, mine: list[_Work[T]], anywhere: bool) -> list[_Work[T]]:
        if self._writer is None and not anywhere:
            for item in mine:
                self._run_alone(item)
            return mine
        return self._combined(mine)  # type: ignore[return-value]

    def _run_alone(self, item: _Work[Any]) -> None:
        """Run one work in a transaction of its own; one that PostgreSQL aborted to break a deadlock runs
        again (`retrying`)."""
        def once() -> Any:
            with self.unit_of_work() as uow:
                result = item.work(uow)
                uow.commit()
            return result

        try:
            item.result = retrying(once)
        except Exception as exc:  # noqa: BLE001 (handed to the thread whose work it is)
            item.error = exc

    def _run_together(self, batch: list[_Work[Any]]) -> list[_Work[Any]]:
        """Run `batch` in one transaction, stopping early once it has held the write lock TOGETHER_SECONDS;
        the works it ran (what is left goes back to the head of the queue)."""
        ran = batch
        try:
            with self.unit_of_work() as uow:
                deadline = time.perf_counter() + TOGETHER_SECONDS
                for position, item in enumerate(batch):
                    if position and time.perf_counter() > deadline:
                        ran = batch[:position]
                        break
                    item.result = item.work(uow)
                uow.commit()
        except Exception as exc:  # noqa: BLE001 (rolled back: run each alone, to give each its own outcome)
            if len(ran) == 1:
                ran[0].error = exc
            else:
                for item in ran:
                    self._run_alone(item)
        return ran

    def reserve_ticket_ids(self, day: date, code: str, count: int) -> list[str]:
        """PostgreSQL: the next `count` IDs of the day's counter, reserved for later use in a transaction of their own
        that is one statement (`TicketRepository.reserve_ticket_ids`), on a connection in autocommit: one round trip,
        and the counter's row is free again as soon as the server has written it."""
        with self.engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT")  # this checkout only: the pool resets it
            return TicketRepository(conn).reserve_ticket_ids(day, code, count)

    def ping(self) -> None:
        """Raise if the database does not answer (readiness)."""
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    @contextmanager
    def unit_of_work(self) -> Iterator[UnitOfWork]:
        with self._writer or nullcontext(), self.engine.connect() as conn:
            uow = UnitOfWork(conn)
            conn.begin()
            try:
                yield uow
            finally:
                if conn.in_transaction():
                    conn.rollback()


TOGETHER_MAX = 32  # works run in one transaction by Store.together, at most
TOGETHER_SECONDS = 0.005  # ... and no more once it has held the write lock this long (others wait for it)


class _Work(Generic[T]):
    def __init__(self, work: Callable[[UnitOfWork], T]):
        self.work = work
        self.result: T | None = None
        self.error: BaseException | None = None

    def outcome(self) -> T:
        if self.error is not None:
            raise self.error
        return self.result  # type: ignore[return-value]


class UnitOfWork:
    def __init__(self, conn: Connection):
        self.conn = conn
        self.tickets = TicketRepository(conn)
        self.inbox = InboxRepository(conn)
        self.deliveries = DeliveryRepository(conn)

    @property
    def polls(self) -> PollRepository:
        return PollRepository(self.conn)

    @property
    def alerts(self) -> AlertRepository:
        return AlertRepository(self.conn)

    @property
    def stats(self) -> StatsRepository:
        return StatsRepository(self.conn)

    @property
    def reconcile(self) -> ReconcileRepository:
        return ReconcileRepository(self.conn)

    def commit(self) -> None:
        # The next statement, if any, begins the next transaction (autobegin). Beginning one here at once
        # cost an empty BEGIN IMMEDIATE (SQLite's write lock) and a ROLLBACK on every unit of work.
        self.conn.commit()
