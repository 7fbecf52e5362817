"""Acme's sandbox twin: its API in memory, served through `httpx.MockTransport` (tests only)."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime
from typing import Any

import httpx

PAGE = 2


class AcmeTwin:
    def __init__(self, token: str, user: str = "hub@acme.example"):
        self.token, self.user = token, user
        self.tickets: dict[str, dict[str, Any]] = {}
        self._ids = itertools.count(1001)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.headers.get("x-acme-token") != self.token:
            return httpx.Response(401, json={"error": "bad token"})
        parts = request.url.path.strip("/").split("/")
        if request.method == "POST" and parts == ["tickets"]:
            ticket_id = str(next(self._ids))
            self.tickets[ticket_id] = {"id": ticket_id, "customer": None, "problem": None}
            return self._save(ticket_id, json.loads(request.content), 201)
        if request.method == "GET" and parts == ["tickets"]:
            since = datetime.fromisoformat(request.url.params["since"]) if "since" in request.url.params else None
            ids = sorted(i for i, t in self.tickets.items()
                         if since is None or datetime.fromisoformat(t["updated_at"]) >= since)
            start = int(request.url.params.get("cursor") or 0)
            following = start + PAGE if start + PAGE < len(ids) else None
            return httpx.Response(200, json={"tickets": [self.tickets[i] for i in ids[start:start + PAGE]],
                                             "next": str(following) if following else None})
        if len(parts) == 2 and parts[0] == "tickets":
            if parts[1] not in self.tickets:
                return httpx.Response(404, json={"error": "no such ticket"})
            if request.method == "GET":
                return httpx.Response(200, json=self.tickets[parts[1]])
            if request.method == "PATCH":
                return self._save(parts[1], json.loads(request.content), 200)
        return httpx.Response(405)

    def _save(self, ticket_id: str, fields: dict[str, Any], status: int) -> httpx.Response:
        ticket = self.tickets[ticket_id]
        ticket.update({k: v for k, v in fields.items() if k in ("customer", "problem")})
        ticket.update(updated_at=datetime.now(UTC).isoformat(), updated_by=self.user)
        return httpx.Response(status, json={"id": ticket_id})
