"""Engines for the store: SQLite (WAL, immediate write transactions) or PostgreSQL."""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

try:
    import fcntl
except ImportError:  # Windows: processes fall back to SQLite's own busy polling
    fcntl = None  # type: ignore[assignment]

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, InvalidatePoolError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

# what a wrong configuration says (exit with the fix), as opposed to a database that is away for now (wait)
_MISCONFIGURED = ("password authentication failed", "authentication failed", "does not exist",
                  "no pg_hba.conf entry", "unable to open database file", "invalid dsn", "invalid connection option")


def unavailable(exc: BaseException) -> bool:
    """The database cannot be reached right now (down, restarting, the network, every connection busy): worth
    answering 503 and waiting for, unlike a wrong URL or credentials, which no wait mends."""
    if isinstance(exc, PoolTimeout):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, (OperationalError, InterfaceError)):
        said = str(exc.orig if exc.orig is not None else exc).lower()
        return not any(words in said for words in _MISCONFIGURED)
    return False


T = TypeVar("T")

# PostgreSQL broke a deadlock or a serialisation conflict by aborting this transaction: run again, it will pass
_CONFLICT_STATES = frozenset({"40P01", "40001"})
CONFLICT_RETRIES = 3  # work aborted that way runs again this many times before its error is raised


def conflicted(exc: BaseException) -> bool:
    """The transaction was aborted only because it crossed another one (deadlock, serialisation failure): the
    same work, run again from the start, is expected to succeed."""
    orig = getattr(exc, "orig", None)
    state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    return isinstance(exc, DBAPIError) and state in _CONFLICT_STATES


def retrying(work: Callable[[], T]) -> T:
    """`work()` (whole transactions, nothing else), run again after a short random pause when PostgreSQL
    aborted it to break a deadlock (`conflicted`), CONFLICT_RETRIES times at most; any other error at once."""
    for attempt in range(CONFLICT_RETRIES):
        try:
            return work()
        except DBAPIError as exc:
            if not conflicted(exc):
                raise
        time.sleep(random.uniform(0.005, 0.05) * (attempt + 1))
    return work()


def reason(exc: BaseException) -> str:
    """A short description of why the database is away, with no URL or secret: the driver's first line."""
    said = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    first = said[0] if said else type(exc).__name__
    return first.split("://")[0][:200] if "://" in first else first[:200]


def wait_for_database(engine: Engine, say: Callable[[str], None], sleep: Callable[[float], None] = time.sleep,
                      longest: float = 5.0) -> None:
    """Return once the database answers; wait with back-off while it is away (saying so once, and once when
    it is back). A configuration error is raised at once."""
    delay, waiting = 0.25, False
    while True:
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:
            if not unavailable(exc):
                raise
            if not waiting:
                say(f"waiting for the database at {engine.url.render_as_string()}: {reason(exc)}")
                waiting = True
            sleep(delay)
            delay = min(delay * 2, longest)
            continue
        if waiting:
            say("the database answers again")
        return


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for `url`. On SQLite: WAL, a busy timeout, foreign keys, and BEGIN IMMEDIATE, so a
    transaction takes the write lock when it starts rather than failing when it first writes."""
    parsed = make_url(url)
    # workers run up to 32 delivery threads: the default pool (5 + 10 overflow) made them queue for connections
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 40)
    if parsed.get_backend_name() != "sqlite":
        engine = create_engine(url, **kwargs)
        if not kwargs.get("pool_pre_ping"):
            ping_when_idle(engine)
        return engine

    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # let the "begin" hook below issue BEGIN itself
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


PING_AFTER_IDLE = 0.5  # seconds a pooled connection may rest and still be taken without a ping


def ping_when_idle(engine: Engine) -> None:
    """Check a pooled connection before use if it rested PING_AFTER_IDLE seconds or more, as SQLAlchemy's pre-ping
    does on every checkout; one in use moments ago is taken as it is (HikariCP's rule, with its 500 ms). On a dead one
    the whole pool is dropped and the checkout reconnects, as with pre-ping. Pre-ping cost each transaction a round
    trip: at 100 events/s with five subscribers, ~2 an event (the webhook's, the events worker's and the deliveries
    worker's transactions), 4% of the API process's CPU. A connection that died within the last PING_AFTER_IDLE
    seconds fails its first statement instead: that error says the connection was invalidated, the pool is dropped
    the same way, and the caller treats it as the database being away (`unavailable`: the API answers 503, a
    worker's work is tried again), as it already must for a database that goes away mid-transaction."""
    dialect = engine.dialect

    @event.listens_for(engine, "checkin")
    def _rested_from(_dbapi_connection: Any, record: Any) -> None:
        record.info["rested_from"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping_if_rested(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        rested_from = record.info.get("rested_from")
        if rested_from is None or time.monotonic() - rested_from < PING_AFTER_IDLE:
            return  # new (just connected), or in use moments ago
        try:
            dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as exc:
            if dialect.is_disconnect(exc, dbapi_connection, None):
                raise InvalidatePoolError() from exc  # the pool reconnects, as pre-ping's failure makes it
            raise


class SqliteWriteLock:
    """SQLite's one write lock, queued for in the kernel rather than polled for.

    A transaction that finds SQLite's lock taken by another process sleeps and retries (1, 2, 5 ... up to
    100 ms a try), so under contention a waiter oversleeps the holder by milliseconds to tens of them: the
    API's inserts waited behind the events worker's transactions that way (bench/pipeline.py, embedded,
    acknowledgement p99 at 500/s offered: 1.7-2.5 s before, 0.4-0.5 s with this). Every write transaction
    of the hub takes this lock first: threads of a process queue on a lock, processes on an advisory lock
    (`flock`) on a file beside the database, and each is woken as soon as it is free. The kernel drops a dead
    process's lock. Re-entrant within a thread; the file is opened once per process (a forked child opens
    its own: a shared open file would share the lock)."""

    def __init__(self, database: str | None):
        self._threads = threading.RLock()
        self._depth = 0
        self._path = f"{database}.writelock" if database and database != ":memory:" and fcntl else None
        self._fd: int | None = None
        self._pid = 0

    def _file(self) -> int | None:
        if self._path is None:
            return None
        if self._fd is None or self._pid != os.getpid():
            self._fd, self._pid = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600), os.getpid()
        return self._fd

    def __enter__(self) -> SqliteWriteLock:
        self._threads.acquire()
        try:
            if self._depth == 0 and (fd := self._file()) is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            self._threads.release()
            raise
        self._depth += 1
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._depth -= 1
        try:
            if self._depth == 0 and self._fd is not None and self._pid == os.getpid():
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._threads.release()
