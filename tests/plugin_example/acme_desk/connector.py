"""Acme's REST API: GET/PATCH /tickets/{id}, POST /tickets, GET /tickets?cursor= (pages), token header."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

import httpx

from hub.core.canonical import parse_datetime
from hub.core.errors import InvalidValue
from hub.core.ports import (
    UNKNOWN_AUTHOR,
    ConnectorError,
    FieldSchema,
    Notice,
    RecordNotFound,
    SourceRecord,
    WriteRequest,
    WriteResult,
    parse_retry_after,
)

FIELDS = ("customer", "problem")


def parse_notices(_system: str, payload: Any) -> list[Notice]:
    """Acme's webhook: {"ticket": "<id>", "changed_at": "<ISO time>"}; the ticket is read back."""
    if not isinstance(payload, dict) or not isinstance(payload.get("ticket"), str) or not payload["ticket"]:
        raise InvalidValue("an Acme notice is an object with `ticket` (its id) and `changed_at`")
    changed = payload.get("changed_at")
    return [Notice(payload["ticket"], parse_datetime(changed) if isinstance(changed, str) else None)]


class AcmeConnector:
    SCHEMA: Mapping[str, FieldSchema] = {"customer": FieldSchema("string", max_length=80),
                                         "problem": FieldSchema("text")}

    def __init__(self, system: str, base_url: str, token: str, client: httpx.Client):
        self.system, self.base_url, self.client = system, base_url.rstrip("/"), client
        self.headers = {"X-Acme-Token": token}

    def parse_notice(self, headers: Mapping[str, str], payload: Any) -> list[Notice]:
        return parse_notices(self.system, payload)

    def read(self, local_id: str, kind: str = "record") -> list[SourceRecord]:
        return [self._record(self._get(f"/tickets/{local_id}"))]

    def read_all(self, since: datetime | None = None) -> Iterator[SourceRecord]:
        cursor = ""
        while True:
            params = {"cursor": cursor, **({"since": since.isoformat()} if since else {})}
            page = self._get("/tickets", params=params)
            yield from (self._record(row) for row in page["tickets"])
            if not page.get("next"):
                return
            cursor = page["next"]

    def create(self, request: WriteRequest) -> WriteResult:
        return self._send("POST", "/tickets", request)

    def write(self, request: WriteRequest) -> WriteResult:
        if request.local_id is None:  # the hub does not know Acme's record for this ticket yet: make one
            return self.create(request)
        return self._send("PATCH", f"/tickets/{request.local_id}", request)

    def _send(self, method: str, path: str, request: WriteRequest) -> WriteResult:
        try:
            response = self.client.request(method, self.base_url + path, json=dict(request.fields),
                                           headers=self.headers)
        except httpx.HTTPError as exc:
            return WriteResult(None, error=f"no answer: {type(exc).__name__}")
        if response.is_success:
            return WriteResult(response.status_code, local_id=str(response.json()["id"]))
        return WriteResult(response.status_code, parse_retry_after(response.headers.get("retry-after"), time.time()),
                           f"HTTP {response.status_code}")

    def _get(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        try:
            response = self.client.get(self.base_url + path, params=params, headers=self.headers)
        except httpx.HTTPError as exc:
            raise ConnectorError(f"{self.system}: Acme did not answer ({type(exc).__name__})") from exc
        if response.status_code == 404:
            raise RecordNotFound(f"{self.system}: Acme has no {path}")
        if response.status_code == 401:
            raise ConnectorError(f"{self.system}: Acme refused the token: check credentials_env")
        response.raise_for_status()
        return response.json()

    def _record(self, row: Mapping[str, Any]) -> SourceRecord:
        return SourceRecord(self.system, str(row["id"]), parse_datetime(row["updated_at"]),
                            row.get("updated_by") or UNKNOWN_AUTHOR, {k: row.get(k) for k in FIELDS})
