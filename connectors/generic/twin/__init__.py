"""A sandbox twin of an in-house service that speaks the generic type: it takes the hub's signed writes, keeps
its records, lets a test edit and delete them behind the hub's back, serves the bulk export (README
"Reconciliation") and writes the change notices it would send. In memory, through `httpx.MockTransport`:
for tests, benches and the demo, never production code."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from hub.core.canonical import format_datetime, parse_datetime
from hub.core.signing import SignatureError, verify_standard

HUB_AUTHOR = "tickethub"  # who the twin says wrote what the hub sent


@dataclass
class TwinRecord:
    id: str
    fields: dict[str, Any]
    author: str
    modified_at: datetime


@dataclass
class GenericTwin:
    """One system. `write_path` takes the hub's deliveries; `export_path` serves the export (None: no export)."""

    name: str
    secret: str
    token: str = "export-token"
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    write_path: str = "/hub"
    export_path: str | None = "/export"
    records: dict[str, TwinRecord] = field(default_factory=dict)
    received: list[dict[str, Any]] = field(default_factory=list)
    failures: list[int] = field(default_factory=list)  # statuses the next export requests answer, in turn
    _ids: Any = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def host(self) -> str:
        return f"{self.name}.twin"

    @property
    def base_url(self) -> str:
        return f"http://{self.host}{self.write_path}"

    @property
    def export_url(self) -> str | None:
        return f"http://{self.host}{self.export_path}" if self.export_path else None

    # ---- the test's hands ------------------------------------------------------------------------------

    def create(self, author: str, at: datetime | None = None, local_id: str | None = None,
               **fields: Any) -> TwinRecord:
        with self._lock:
            record = TwinRecord(local_id or f"{self.name.upper()}-{next(self._ids)}", {}, author, at or self.clock())
            _set_paths(record.fields, fields)
            self.records[record.id] = record
            return record

    def edit(self, local_id: str, author: str, at: datetime | None = None, **fields: Any) -> TwinRecord:
        """A change made in the system itself (no notice is sent unless the test sends `notice`)."""
        with self._lock:
            record = self.records[local_id]
            _set_paths(record.fields, fields)
            record.author, record.modified_at = author, at or self.clock()
            return record

    def delete(self, local_id: str) -> None:
        with self._lock:
            del self.records[local_id]

    def notice(self, local_id: str) -> dict[str, Any]:
        """The change notice the system POSTs to the hub for a record (the generic payload)."""
        record = self.records[local_id]
        return {"local_id": record.id, "modified_at": format_datetime(record.modified_at), "author": record.author,
                "fields": json.loads(json.dumps(record.fields))}

    def value(self, local_id: str, path: str) -> Any:
        node: Any = self.records[local_id].fields
        for part in path.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        return node

    # ---- HTTP ------------------------------------------------------------------------------------------

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and request.url.path == self.write_path:
            return self._write(request)
        if request.method == "GET" and self.export_path and request.url.path == self.export_path:
            return self._export(request)
        return httpx.Response(404, json={"error": f"{self.name} twin has no {request.method} {request.url.path}"})

    def _write(self, request: httpx.Request) -> httpx.Response:
        try:
            verify_standard([self.secret], dict(request.headers), request.content, time.time())
        except SignatureError as exc:
            return httpx.Response(401, json={"error": str(exc)})
        body = json.loads(request.content)
        with self._lock:
            self.received.append(body)
            local_id = body.get("local_id")
            if local_id is None or local_id not in self.records:
                local_id = local_id or f"{self.name.upper()}-{next(self._ids)}"
                self.records[local_id] = TwinRecord(local_id, {}, HUB_AUTHOR, self.clock())
            record = self.records[local_id]
            _set_paths(record.fields, body["fields"])
            record.author, record.modified_at = HUB_AUTHOR, self.clock()
        return httpx.Response(200, json={"local_id": local_id})

    def _export(self, request: httpx.Request) -> httpx.Response:
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return httpx.Response(401, json={"error": "bad token"})
        with self._lock:
            if self.failures:
                return httpx.Response(self.failures.pop(0), json={"error": "injected"}, headers={"retry-after": "0"})
            since = request.url.params.get("since")
            ordered = sorted(self.records.values(), key=lambda r: (r.modified_at, r.id))
            if since:
                ordered = [r for r in ordered if r.modified_at >= parse_datetime(since)]
            start = int(request.url.params.get("cursor") or 0)
            limit = int(request.url.params.get("limit") or 100)
            page = ordered[start:start + limit]
            following = str(start + limit) if start + limit < len(ordered) else None
            return httpx.Response(200, json={"records": [
                {"id": r.id, "modified_at": format_datetime(r.modified_at), "author": r.author, "fields": r.fields}
                for r in page], "next_cursor": following})


def transport(*twins: GenericTwin, fallback: Mapping[str, Callable[[httpx.Request], httpx.Response]] | None = None
              ) -> httpx.MockTransport:
    """One transport for several twins, routed by host name."""
    by_host: dict[str, Callable[[httpx.Request], httpx.Response]] = {t.host: t.handle for t in twins}
    by_host.update(fallback or {})

    def route(request: httpx.Request) -> httpx.Response:
        handler = by_host.get(request.url.host)
        return handler(request) if handler else httpx.Response(502, json={"error": f"no twin at {request.url.host}"})

    return httpx.MockTransport(route)


def _set_paths(target: dict[str, Any], values: Mapping[str, Any]) -> None:
    for path, value in values.items():
        node = target
        *parents, leaf = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
