"""The generic system type: signed writes out, and (optionally) a bulk export read back for reconciliation.

Writes: a Standard-Webhooks-signed JSON POST to the system's URL, body `{"type": "ticket.fields",
"delivery_id", "ticket_id", "local_id", "fields": {system field: value}}`. The `webhook-id` is stable per
delivery attempt sequence (`delivery-<id>`), so a receiver that sees the same write twice (after a worker
crash) can tell. A 2xx answer may carry `{"local_id": ...}` to link the receiver's own record to the ticket.

Bulk export (what an in-house service implements to be reconciled; README "Reconciliation"):
    GET {export_url}?limit=<n>&cursor=<opaque, absent at first>&since=<ISO 8601, absent for everything>
    Authorization: Bearer <the secret named by credentials_env>
    200 {"records": [{"id", "modified_at" (ISO 8601 with zone), "author", "fields": {its own names}}],
         "next_cursor": <opaque string, or null on the last page>}
Records changed at or after `since`, in a stable order; 401/403 mean the token is refused; 429 and 5xx are
retried (honouring Retry-After) before the system is reported as not checked.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from functools import lru_cache, partial
from typing import Any

import httpx
import orjson

from connectors.generic.notice import parse_notices
from hub.core.canonical import format_datetime, parse_datetime
from hub.core.errors import InvalidValue
from hub.core.ports import (
    UNKNOWN_AUTHOR,
    BulkReadUnavailable,
    ConnectorError,
    FieldSchema,
    HttpAnswer,
    HttpWrite,
    Notice,
    SourceRecord,
    TransientReadError,
    WriteRequest,
    WriteResult,
    parse_retry_after,
)
from hub.core.retry import read_page
from hub.core.signing import sign_standard


class GenericConnector:
    SCHEMA: Mapping[str, FieldSchema] = {}  # declared by the system's mapping file (max_length, pattern, ...)

    def __init__(self, system: str, url: str, secret: str, client: httpx.Client, export_url: str | None = None,
                 token: str | None = None, page_size: int = 500):
        self.system = system
        self.url = url
        self.secret = secret
        self.client = client
        self.export_url, self.token, self.page_size = export_url, token, page_size

    def parse_notice(self, headers: Mapping[str, str], payload: Any) -> list[Notice]:
        """A generic notice carries the whole record: nothing to read afterwards."""
        return parse_notices(self.system, payload)

    def read(self, local_id: str, kind: str = "record") -> list[SourceRecord]:
        raise ConnectorError(f"{self.system} is a generic system: it pushes its records and cannot be read")

    def read_all(self, since: datetime | None = None) -> Iterator[SourceRecord]:
        if not self.export_url:
            raise BulkReadUnavailable(f"{self.system} is a generic system with no export_url: set export_url (and"
                                      f" credentials_env) under [systems.{self.system}] to have it reconciled")
        # the next page is asked for as soon as this one is in, and read while the caller works through this
        # one: the export and the hub work at once rather than in turn (still one request at a time, in order;
        # a page that cannot be read raises where the caller reaches it)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"export-{self.system}") as ahead:
            following = ahead.submit(read_page, partial(self._export_page, None, since))
            try:
                while True:
                    page = following.result()
                    cursor = page.get("next_cursor")
                    if cursor:
                        following = ahead.submit(read_page, partial(self._export_page, cursor, since))
                    for row in page["records"]:
                        yield self._exported(row)
                    if not cursor:
                        return
            finally:
                following.cancel()  # the caller stopped early: a page asked for and not started is not read

    def _export_page(self, cursor: str | None, since: datetime | None) -> dict[str, Any]:
        params: dict[str, str | int] = {"limit": self.page_size}
        if cursor:
            params["cursor"] = cursor
        if since is not None:
            params["since"] = format_datetime(since)
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            response = self.client.get(self.export_url or "", params=params, headers=headers)
        except httpx.HTTPError as exc:
            raise TransientReadError(f"{self.system}: the export did not answer ({type(exc).__name__})") from exc
        if response.status_code == 429 or response.status_code >= 500:
            raise TransientReadError(f"{self.system}: the export answered {response.status_code}",
                                     parse_retry_after(response.headers.get("retry-after"), time.time()))
        if response.status_code in (401, 403):
            raise ConnectorError(f"{self.system}: the export refused the token ({response.status_code}); check the"
                                 " variable named by credentials_env")
        if not response.is_success:
            raise ConnectorError(f"{self.system}: the export answered {response.status_code}")
        try:
            page = orjson.loads(response.content)  # several times the standard library's speed on a big page
        except orjson.JSONDecodeError:
            try:  # what orjson refuses and the standard library takes (another encoding, NaN): as before
                page = response.json()
            except ValueError as exc:
                raise ConnectorError(f"{self.system}: the export answered something that is not JSON") from exc
        if not isinstance(page, dict) or not isinstance(page.get("records"), list):
            raise ConnectorError(f"{self.system}: an export page is an object with `records` and `next_cursor`")
        return page

    def _exported(self, row: Any) -> SourceRecord:
        try:
            modified = row["modified_at"]
            return SourceRecord(self.system, str(row["id"]),
                                _parse_stamp(modified) if type(modified) is str else parse_datetime(modified),
                                str(row.get("author") or UNKNOWN_AUTHOR), row["fields"])
        except (KeyError, TypeError, InvalidValue) as exc:
            raise ConnectorError(f"{self.system}: an exported record needs id, modified_at (ISO 8601) and fields:"
                                 f" {exc}") from exc

    def create(self, request: WriteRequest) -> WriteResult:
        return self.write(request)

    def prepare(self, request: WriteRequest) -> HttpWrite:
        """The signed POST of one write (the hub sends it on its async client, or `write` on httpx)."""
        body = json.dumps({
            "type": "ticket.fields",
            "delivery_id": request.delivery_id,
            "ticket_id": request.ticket_id,
            "local_id": request.local_id,
            "fields": dict(request.fields),
        }, separators=(",", ":")).encode()
        msg_id, timestamp = f"delivery-{request.delivery_id}", int(time.time())
        headers = {"content-type": "application/json", "webhook-id": msg_id, "webhook-timestamp": str(timestamp),
                   "webhook-signature": sign_standard(self.secret, msg_id, timestamp, body)}
        return HttpWrite("POST", self.url, headers, body)

    def result(self, answer: HttpAnswer) -> WriteResult:
        if answer.status is None:
            return WriteResult(None, error=answer.error)
        retry_after = parse_retry_after(answer.headers.get("retry-after"), time.time())
        if 200 <= answer.status < 300:
            return WriteResult(answer.status, local_id=_local_id(answer.body))
        text = answer.body.decode("utf-8", "replace")
        return WriteResult(answer.status, retry_after, f"HTTP {answer.status}: {text[:300]}")

    def write(self, request: WriteRequest) -> WriteResult:
        out = self.prepare(request)
        try:
            response = self.client.request(out.method, out.url, content=out.body, headers=dict(out.headers))
        except httpx.TimeoutException as exc:
            return self.result(HttpAnswer(None, {}, b"", f"timed out: {type(exc).__name__}"))
        except httpx.HTTPError as exc:
            return self.result(HttpAnswer(None, {}, b"", f"no answer: {type(exc).__name__}: {exc}"[:300]))
        return self.result(HttpAnswer(response.status_code, response.headers, response.content))


@lru_cache(maxsize=4096)
def _parse_stamp(text: str) -> datetime:
    """`parse_datetime` of an export's modified-at, remembered: a page's records share few distinct stamps
    (datetimes are immutable, so sharing one is safe; a refused stamp raises and is not remembered)."""
    return parse_datetime(text)


def _local_id(body: bytes) -> str | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    value = data.get("local_id") if isinstance(data, dict) else None
    return str(value) if isinstance(value, (str, int)) and value != "" else None
