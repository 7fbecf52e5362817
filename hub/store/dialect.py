"""The one place that picks the dialect's INSERT (for ON CONFLICT): PostgreSQL's or SQLite's."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite


def insert_for(dialect: str, table: Any) -> Any:
    return (postgresql if dialect == "postgresql" else sqlite).insert(table)
