"""What every connector offers the hub, and the shapes that cross that seam.

A connector wraps one system's API behind a few methods and takes an `httpx.Client` in its
constructor, so tests hand it `httpx.MockTransport` or a sandbox app. It never retries: the delivery
layer (Celery) is the one retry layer. Writes report what happened instead of raising; reads raise
`ConnectorError` (or `RecordNotFound`) with a message a person can act on.

    parse_notice(headers, payload) -> [Notice]     pure: what a webhook says changed
    read(local_id, kind) -> [SourceRecord]         the record(s) a notice names, with author and modified-at
    read_all(since) -> Iterator[SourceRecord]      every record (changed since), page by page (reconciliation)
    write(WriteRequest) -> WriteResult             fields to the ticket's record (created if local_id is None)
    create(WriteRequest) -> WriteResult            a new record for a ticket (local_id in the result)
    SCHEMA                                         what the system accepts, declared (no I/O)

The hub itself reaches a type's notice parser and schema through its plug-in declaration
(`hub.core.plugin.ConnectorType.parse_notice(system, payload)` and `.schema(options)`), so that intake
needs no connector (no credentials) to check a webhook.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from hub.core.canonical import JsonScalar
from hub.core.errors import TickethubError

UNKNOWN_AUTHOR = "unknown"  # the author of a change the system does not attribute (lowest rank)


class ConnectorError(TickethubError):
    """A system could not be read: unreachable, refused our credentials, or answered nonsense."""


class RecordNotFound(ConnectorError):
    pass


class TransientReadError(ConnectorError):
    """A read that may work if tried again soon: no answer, a timeout, 5xx, 429 (with its Retry-After)."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class BulkReadUnavailable(ConnectorError):
    """The system offers no bulk read as configured (e.g. a generic system without `export_url`): the
    message says what to configure. Reconciliation reports the system as not checked."""


@dataclass(frozen=True)
class SourceRecord:
    """A system's record as the connector reads it: fields in the system's own (possibly nested) names."""

    system: str
    local_id: str
    modified_at: datetime
    author: str
    fields: Mapping[str, Any]
    version: str | None = None


@dataclass(frozen=True)
class Notice:
    """What a webhook says: this record changed at this time. `record` is set when the payload carries
    the whole record (generic systems); otherwise the connector reads it before it is applied."""

    local_id: str
    modified_at: datetime | None = None
    record: SourceRecord | None = None
    kind: str = "record"  # which kind of record the local ID names (bottlecrm: case | contact)


@dataclass(frozen=True)
class FieldSchema:
    """One field as the system accepts it."""

    type: str  # string | text | integer | decimal | boolean | datetime | enum
    choices: tuple[str, ...] = ()
    max_length: int | None = None
    writable: bool = True


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


@dataclass(frozen=True)
class HttpWrite:
    """A write that is one HTTP request: what to send. The hub sends these on its own async client (many at a
    time from one event loop per worker process), and hands the answer back to the connector to read."""

    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True)
class HttpAnswer:
    """What came back for an HttpWrite: the status, headers (lower-case names) and body; or, with no
    answer at all (timeout, refused), `status` None and `error` saying why."""

    status: int | None
    headers: Mapping[str, str]
    body: bytes
    error: str | None = None


@runtime_checkable
class HttpWriter(Protocol):
    """A connector whose write is one HTTP request (the generic type): the hub may send it itself."""

    def prepare(self, request: WriteRequest) -> HttpWrite:
        """The request to send for this write (signed, ready to go)."""
        ...

    def result(self, answer: HttpAnswer) -> WriteResult:
        """What the answer means (never raises)."""
        ...


class Writer(Protocol):
    system: str

    def write(self, request: WriteRequest) -> WriteResult:
        """Write fields to the system's record for the ticket; report the outcome, do not raise."""
        ...


class Connector(Writer, Protocol):
    SCHEMA: Mapping[str, FieldSchema]

    def parse_notice(self, headers: Mapping[str, str], payload: Any) -> list[Notice]: ...

    def read(self, local_id: str, kind: str = "record") -> list[SourceRecord]: ...

    def read_all(self, since: datetime | None = None) -> Iterator[SourceRecord]:
        """Every record (changed at or after `since`), streamed page by page, never all in memory. A page
        that fails transiently is retried (`hub.core.retry.read_page`) before ConnectorError is raised."""
        ...

    def create(self, request: WriteRequest) -> WriteResult: ...


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
