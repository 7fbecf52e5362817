"""Engines for the store: SQLite (WAL, immediate write transactions) or PostgreSQL."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

try:
    import fcntl
except ImportError:  # Windows: processes fall back to SQLite's own busy polling
    fcntl = None  # type: ignore[assignment]

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for `url`. On SQLite: WAL, a busy timeout, foreign keys, and BEGIN IMMEDIATE, so a
    transaction takes the write lock when it starts rather than failing when it first writes."""
    parsed = make_url(url)
    # workers run up to 32 delivery threads: the default pool (5 + 10 overflow) made them queue for connections
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 40)
    if parsed.get_backend_name() != "sqlite":
        kwargs.setdefault("pool_pre_ping", True)
        return create_engine(url, **kwargs)

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
