"""The generic system's change notice, as a system POSTs it to `/webhooks/{system}`:

    {"local_id": "CASE-1001", "modified_at": "2026-02-13T09:00:00Z", "author": "agent@example.com",
     "fields": {"contact": {"phone": "+44 20 7946 0000"}, "case": {"status": "New"}}}

It carries the whole record (fields in the system's own names, translated by its mapping), so nothing is
read back. Pure.
"""

from __future__ import annotations

from typing import Any

from pydantic import AwareDatetime, Field, ValidationError

from hub.core.errors import InvalidValue
from hub.core.ports import Notice, SourceRecord
from hub.core.strict import StrictModel


class GenericPayload(StrictModel):
    """The generic system's change notice: its record's ID, when and by whom it changed, and fields
    in the system's own names (translated by its mapping)."""

    local_id: str = Field(min_length=1, max_length=255)
    modified_at: AwareDatetime
    author: str = Field(min_length=1, max_length=255)
    fields: dict[str, Any]



def parse_generic(system: str, payload: Any) -> SourceRecord:
    try:
        parsed = GenericPayload.model_validate(payload)
    except ValidationError as exc:
        details = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(body)'}: {e['msg']}" for e in exc.errors()
        )
        raise InvalidValue(f"payload for {system} is not a change notice: {details}") from exc
    return SourceRecord(system, parsed.local_id, parsed.modified_at, parsed.author, parsed.fields)


def parse_notices(system: str, payload: Any) -> list[Notice]:
    record = parse_generic(system, payload)
    return [Notice(record.local_id, record.modified_at, record)]
