"""Poll watermarks: per polled system, the newest modified-at read so far. A watermark only moves
forward, so two polls of one system that overlap (a slow poll and the next beat) cannot move it back."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update

from hub.store.dialect import insert_for
from hub.store.tables import poll_watermarks


class PollRepository:
    def __init__(self, conn: Connection):
        self.conn = conn

    def watermark(self, system: str) -> datetime | None:
        return self.conn.execute(select(poll_watermarks.c.watermark)
                                 .where(poll_watermarks.c.system == system)).scalar_one_or_none()

    def advance(self, system: str, watermark: datetime | None, now: datetime, records: int) -> None:
        first = insert_for(self.conn.dialect.name, poll_watermarks).values(
            system=system, watermark=None, polled_at=now, records=0)
        self.conn.execute(first.on_conflict_do_nothing())
        values: dict[str, Any] = {"polled_at": now, "records": poll_watermarks.c.records + records,
                                  "failed_at": None, "last_error": None}
        self.conn.execute(update(poll_watermarks).where(poll_watermarks.c.system == system).values(**values))
        if watermark is not None:
            self.conn.execute(update(poll_watermarks).where(
                poll_watermarks.c.system == system,
                (poll_watermarks.c.watermark.is_(None)) | (poll_watermarks.c.watermark < watermark),
            ).values(watermark=watermark))

    def fail(self, system: str, now: datetime, error: str) -> None:
        """A poll that could not read the system: the watermark stays; the error is kept for operators."""
        first = insert_for(self.conn.dialect.name, poll_watermarks).values(
            system=system, watermark=None, polled_at=now, records=0)
        self.conn.execute(first.on_conflict_do_nothing())
        self.conn.execute(update(poll_watermarks).where(poll_watermarks.c.system == system)
                          .values(failed_at=now, last_error=error[:2000]))

    def all(self) -> list[dict[str, Any]]:
        return [dict(r._mapping) for r in self.conn.execute(select(poll_watermarks).order_by(poll_watermarks.c.system))]
