"""Global ticket IDs: `YYYYMMDD-BIZ-NNNNN` (creation date, business code, per-day-per-code sequence)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime

from hub.core.errors import InvalidTicketId

_PATTERN = re.compile(r"(?P<day>[0-9]{8})-(?P<code>[A-Z]{2,6})-(?P<seq>[0-9]{5,})\Z", re.ASCII)
BUSINESS_CODE = re.compile(r"[A-Z]{2,6}\Z", re.ASCII)


@dataclass(frozen=True)
class TicketId:
    day: date
    code: str
    sequence: int

    def __str__(self) -> str:
        return f"{self.day:%Y%m%d}-{self.code}-{self.sequence:05d}"


def format_ticket_id(day: date, code: str, sequence: int) -> str:
    if not BUSINESS_CODE.match(code):
        raise InvalidTicketId(f"business code `{code}` must be 2 to 6 capital letters, e.g. SVC")
    if sequence < 1:
        raise InvalidTicketId(f"sequence {sequence} must be 1 or more")
    return str(TicketId(day, code, sequence))


def parse_ticket_id(text: str) -> TicketId:
    match = _PATTERN.match(text)
    if not match:
        raise InvalidTicketId(
            f"`{text}` is not a ticket ID; expected YYYYMMDD-BIZ-NNNNN, e.g. 20260213-SVC-00892"
        )
    try:
        day = datetime.strptime(match["day"], "%Y%m%d").date()
    except ValueError as exc:
        raise InvalidTicketId(f"`{text}` is not a ticket ID: {match['day']} is not a calendar date") from exc
    sequence = int(match["seq"])
    if sequence < 1:
        raise InvalidTicketId(f"`{text}` is not a ticket ID: the sequence starts at 00001")
    return TicketId(day, match["code"], sequence)
