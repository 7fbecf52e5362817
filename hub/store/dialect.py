"""What differs by dialect in more than one repository: the INSERT (for ON CONFLICT), PostgreSQL's or SQLite's;
and a transaction's commit that need not wait for the disk."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy.dialects import postgresql, sqlite


def insert_for(dialect: str, table: Any) -> Any:
    return (postgresql if dialect == "postgresql" else sqlite).insert(table)


_NO_FLUSH_WAIT = text("SET LOCAL synchronous_commit TO OFF")


def commit_without_flush_wait(conn: Connection) -> None:
    """The transaction on `conn` will commit without waiting for its WAL flush (PostgreSQL; SQLite as ever):
    only for one whose rows a later, durable commit of the same work makes durable anyway (the WAL is flushed
    in order), so that the locks it holds are let go at once rather than after the disk."""
    if conn.dialect.name == "postgresql":
        conn.execute(_NO_FLUSH_WAIT)
