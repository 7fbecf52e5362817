"""Outbound writes for the generic system type: a Standard-Webhooks-signed JSON POST to the system's URL.

Body: `{"type": "ticket.fields", "delivery_id", "ticket_id", "local_id", "fields": {system field: value}}`.
The `webhook-id` is stable per delivery attempt sequence (`delivery-<id>`), so a receiver that sees
the same write twice (after a worker crash) can tell. A 2xx answer may carry `{"local_id": ...}` to
link the receiver's own record to the ticket.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from typing import Any

import httpx

from connectors.generic.notice import parse_notices
from hub.core.ports import (
    ConnectorError,
    FieldSchema,
    Notice,
    SourceRecord,
    WriteRequest,
    WriteResult,
    parse_retry_after,
)
from hub.core.signing import sign_standard


class GenericConnector:
    SCHEMA: Mapping[str, FieldSchema] = {}  # declared by the system's mapping file (max_length, pattern, ...)

    def __init__(self, system: str, url: str, secret: str, client: httpx.Client):
        self.system = system
        self.url = url
        self.secret = secret
        self.client = client

    def parse_notice(self, headers: Mapping[str, str], payload: Any) -> list[Notice]:
        """A generic notice carries the whole record: nothing to read afterwards."""
        return parse_notices(self.system, payload)

    def read(self, local_id: str, kind: str = "record") -> list[SourceRecord]:
        raise ConnectorError(f"{self.system} is a generic system: it pushes its records and cannot be read")

    def read_all(self) -> Iterator[SourceRecord]:
        raise ConnectorError(f"{self.system} is a generic system: it pushes its records and cannot be read")

    def create(self, request: WriteRequest) -> WriteResult:
        return self.write(request)

    def write(self, request: WriteRequest) -> WriteResult:
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
        try:
            response = self.client.post(self.url, content=body, headers=headers)
        except httpx.TimeoutException as exc:
            return WriteResult(None, error=f"timed out: {type(exc).__name__}")
        except httpx.HTTPError as exc:
            return WriteResult(None, error=f"no answer: {type(exc).__name__}: {exc}"[:300])
        retry_after = parse_retry_after(response.headers.get("retry-after"), time.time())
        if response.is_success:
            return WriteResult(response.status_code, local_id=_local_id(response))
        return WriteResult(response.status_code, retry_after, f"HTTP {response.status_code}: {response.text[:300]}")


def _local_id(response: httpx.Response) -> str | None:
    try:
        data = response.json()
    except ValueError:
        return None
    value = data.get("local_id") if isinstance(data, dict) else None
    return str(value) if isinstance(value, (str, int)) and value != "" else None
