"""Tryton's JSON-RPC on the wire: its JSON encoding of dates and decimals, session login, and its errors.

Every answer is HTTP 200; a failure is `{"error": [type, details]}` in the body (docs/peers/tryton.md).
This module turns those into `TrytonFault` with the type kept, so the connector can decide what each
means for the hub (a stale `_timestamp` is a conflict to retry; a UserError a refusal no retry mends).
A session that expired (HTTP 401) is renewed once by logging in again; a method Tryton does not expose
answers 403.
"""

from __future__ import annotations

import base64
import datetime as dt
import itertools
import threading
from decimal import Decimal
from typing import Any

import httpx

from hub.core.ports import ConnectorError


class TrytonFault(ConnectorError):
    """Tryton answered a call with an error. `kind` is its type, e.g. UserError, ConcurrencyException."""

    def __init__(self, kind: str, message: str):
        super().__init__(f"{kind}: {message}" if message else kind)
        self.kind = kind
        self.message = message


class TrytonUnreachable(ConnectorError):
    """No usable answer: connection refused, timeout, a 5xx, or a body that is not JSON-RPC."""

    def __init__(self, message: str, status_code: int | None = None):
        super().__init__(message)
        self.status_code = status_code


def encode(value: Any) -> Any:
    """Python values to Tryton's JSON (its `JSONEncoder`): datetimes, dates and decimals as classes."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:  # Tryton stores naive UTC
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return {"__class__": "datetime", "year": value.year, "month": value.month, "day": value.day,
                "hour": value.hour, "minute": value.minute, "second": value.second,
                "microsecond": value.microsecond}
    if isinstance(value, dt.date):
        return {"__class__": "date", "year": value.year, "month": value.month, "day": value.day}
    if isinstance(value, Decimal):
        return {"__class__": "Decimal", "decimal": str(value)}
    if isinstance(value, dict):
        return {k: encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode(v) for v in value]
    return value


def decode(value: Any) -> Any:
    """Tryton's JSON back to Python: datetimes come back aware (UTC), decimals as Decimal."""
    if isinstance(value, list):
        return [decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    kind = value.get("__class__")
    if kind == "datetime":
        return dt.datetime(value["year"], value["month"], value["day"], value.get("hour", 0),
                           value.get("minute", 0), value.get("second", 0), value.get("microsecond", 0),
                           tzinfo=dt.UTC)
    if kind == "date":
        return dt.date(value["year"], value["month"], value["day"])
    if kind == "Decimal":
        return Decimal(value["decimal"])
    if kind == "timedelta":
        return dt.timedelta(seconds=value["seconds"])
    if kind == "bytes":
        return base64.b64decode(value["base64"])
    return {k: decode(v) for k, v in value.items()}


def _message(details: Any) -> str:
    """The human part of an error's details: `[message, description, …]` or a plain string."""
    if isinstance(details, list):
        parts = [str(d) for d in details[:2] if isinstance(d, str) and d]
        return " — ".join(parts)
    return str(details) if details else ""


class TrytonSession:
    """One user's session on one database. Thread-safe: connectors are shared by worker threads."""

    def __init__(self, client: httpx.Client, base_url: str, database: str, login: str, password: str):
        self.client = client
        self.url = f"{base_url.rstrip('/')}/{database}/rpc/"
        self.database = database
        self.login = login
        self._password = password
        self._header: str | None = None
        self.user_id: int | None = None
        self._context: dict[str, Any] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def call(self, method: str, *params: Any) -> Any:
        """Call `method` with `params`; the result, decoded. Raises TrytonFault or TrytonUnreachable."""
        header = self._session()
        response = self._post(method, list(params), header)
        if response.status_code == 401:  # the session expired or was revoked: log in once more
            with self._lock:
                if self._header == header:
                    self._header = None
            response = self._post(method, list(params), self._session())
        return self._result(method, response)

    def _session(self) -> str:
        with self._lock:
            if self._header is None:
                try:
                    answer = self._result("common.db.login", self._post(
                        "common.db.login", [self.login, {"password": self._password}, "en"], None))
                except TrytonFault as exc:
                    raise TrytonFault("AccessDenied", f"Tryton refused the login of {self.login} on "
                                      f"{self.database} ({exc.kind})") from exc
                if not isinstance(answer, list) or len(answer) < 2:
                    raise TrytonUnreachable(f"Tryton login as {self.login} answered {answer!r}")
                self.user_id = int(answer[0])
                token = f"{self.login}:{answer[0]}:{answer[1]}".encode()
                header = "Session " + base64.b64encode(token).decode()
                # the user's preferences (company, companies, language) are the context of every call, as
                # in Tryton's own clients: record rules such as "User in companies" depend on them
                preferences = self._result("model.res.user.get_preferences",
                                           self._post("model.res.user.get_preferences", [True, {}], header))
                self._context = {k: v for k, v in (preferences or {}).items()
                                 if k in ("company", "companies", "employee", "employees", "language", "groups")}
                self._header = header
            return self._header

    def context(self, **extra: Any) -> dict[str, Any]:
        """The session's context (the user's preferences) with `extra` added; logs in if needed."""
        self._session()
        return {**self._context, **extra}

    def _post(self, method: str, params: list[Any], header: str | None) -> httpx.Response:
        headers = {"Authorization": header} if header else {}
        try:
            return self.client.post(self.url, json={"id": next(self._ids), "method": method,
                                                    "params": encode(params)}, headers=headers)
        except httpx.HTTPError as exc:
            raise TrytonUnreachable(f"Tryton at {self.url} did not answer {method}: {type(exc).__name__}") from exc

    def _result(self, method: str, response: httpx.Response) -> Any:
        if response.status_code == 401:
            raise TrytonFault("AccessDenied", f"Tryton refused the credentials of {self.login} (HTTP 401)")
        if response.status_code == 403:  # Tryton's answer to a method that does not exist or is not exposed
            raise TrytonFault("Forbidden", f"Tryton refused to run {method} (HTTP 403: no such method or button)")
        if response.status_code >= 400:
            raise TrytonUnreachable(f"Tryton answered HTTP {response.status_code} to {method}",
                                    response.status_code)
        try:
            body = response.json()
        except ValueError as exc:
            raise TrytonUnreachable(f"Tryton answered {method} with a body that is not JSON") from exc
        if not isinstance(body, dict):
            raise TrytonUnreachable(f"Tryton answered {method} with {type(body).__name__}, not a JSON-RPC object")
        error = body.get("error")
        if error:
            if isinstance(error, list) and error:
                raise TrytonFault(str(error[0]), _message(error[1] if len(error) > 1 else ""))
            raise TrytonFault("Error", _message(error))
        return decode(body.get("result"))
