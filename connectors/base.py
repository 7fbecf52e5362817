"""What every connector offers the hub, and the shapes that cross that seam.

A connector wraps one system's API behind a few methods and takes an `httpx.Client` in its
constructor, so tests hand it `httpx.MockTransport` or a sandbox app. It never retries: the delivery
layer (Celery) is the one retry layer, and a connector reports what happened instead of raising.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from hub.canonical import JsonScalar


@dataclass(frozen=True)
class WriteRequest:
    delivery_id: int
    ticket_id: str
    system: str
    local_id: str | None  # the system's record for the ticket, when the hub knows it
    fields: Mapping[str, JsonScalar]  # system field -> value, as the system stores it
    attempt: int


@dataclass(frozen=True)
class WriteResult:
    """What one write attempt did. `status_code` None means no HTTP answer (timeout, refused)."""

    status_code: int | None
    retry_after: float | None = None  # seconds, from the answer's Retry-After
    error: str | None = None  # a short description, never a secret
    local_id: str | None = None  # the record's ID if the system reported it (e.g. it created one)
    permanent: bool = False  # no retry can help (e.g. the system cannot be written to as configured)


class Connector(Protocol):
    system: str

    def write(self, request: WriteRequest) -> WriteResult:
        """Write fields to the system's record for the ticket; report the outcome, do not raise."""
        ...


def parse_retry_after(value: str | None, now_epoch: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date); None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # str.isdigit() also admits digits float() refuses, e.g. '²'
        return float(value)
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now_epoch)
