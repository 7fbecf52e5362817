"""The courier connector for Kuaidi100 (快递100), the parcel-tracking service.

The hub subscribes a parcel by an ordinary write: `WriteRequest.fields` carries `num` (the waybill) and
`com` (Kuaidi100's company code), either alone when only one changed. Kuaidi100 then pushes the whole track
to `callback_url` whenever it changes (see `push.py`); `read` asks the real-time query for one parcel. A
courier record's local ID is always `<com>:<num>`. There is no bulk export, so reconciliation reports the
system as not checked.

Secrets (the key, the customer id, the salt) are sent only inside signed form fields; no error, result or
repr here contains them, and a vendor message is scrubbed of them before it is quoted.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

import httpx

from connectors.kuaidi100.notice import parse_notices, record_from_track
from connectors.kuaidi100.wire import (
    MAX_NUMBER_LENGTH,
    QUERY_CODES,
    QUERY_PATH,
    SUBSCRIBE_CODES,
    SUBSCRIBE_PATH,
    compact_json,
    query_sign,
    split_local_id,
)
from hub.core.errors import InvalidValue
from hub.core.ports import (
    BulkReadUnavailable,
    ConnectorError,
    FieldSchema,
    Notice,
    RecordNotFound,
    SourceRecord,
    TransientReadError,
    WriteRequest,
    WriteResult,
    parse_retry_after,
)

SUBSCRIBED = ("200", "501")  # 501: already subscribed and still tracked, which is what the hub wanted
_RETRY_CODES = ("500", "501", "502")  # query: server error, busy; subscription: 500 server error, 502 busy


class Kuaidi100Connector:
    SCHEMA: Mapping[str, FieldSchema] = {
        "num": FieldSchema("string", max_length=MAX_NUMBER_LENGTH),
        "com": FieldSchema("string", max_length=64),
        "phone": FieldSchema("string", max_length=20),  # the recipient's or sender's; shunfeng requires it
        "nu": FieldSchema("string", writable=False),
        "state": FieldSchema("string", writable=False),  # the main state code (see wire.MAIN_STATES)
        "ischeck": FieldSchema("enum", choices=("0", "1"), writable=False),
        "delivered_at": FieldSchema("datetime", writable=False),
        "ticket_status": FieldSchema("enum", choices=("delivered",), writable=False),
        "last_context": FieldSchema("text", writable=False),
    }

    def __init__(self, system: str, base_url: str, key: str, customer: str, salt: str, callback_url: str,
                 client: httpx.Client, *, customer_env: str = "customer_env"):
        self.system = system
        self.base_url = base_url.rstrip("/")
        self.callback_url = callback_url
        self.client = client
        self._key, self._customer, self._salt = key, customer, salt
        self._customer_env = customer_env  # the variable named in messages, never its value

    def __repr__(self) -> str:
        return f"Kuaidi100Connector(system={self.system!r}, base_url={self.base_url!r})"

    # ---- webhooks -------------------------------------------------------------------------------------

    def parse_notice(self, _headers: Mapping[str, str], payload: Any) -> list[Notice]:
        return parse_notices(self.system, payload)

    # ---- reads ----------------------------------------------------------------------------------------

    def read(self, local_id: str, kind: str = "record") -> list[SourceRecord]:
        """One parcel's track from the real-time query."""
        parcel = split_local_id(local_id)
        if parcel is None:
            raise RecordNotFound(f"{self.system}: `{local_id}` is not a Kuaidi100 parcel (`<com>:<num>`)")
        com, num = parcel
        param = compact_json({"com": com, "num": num, "resultv2": "1"})
        form = {"customer": self._customer, "sign": query_sign(param, self._key, self._customer), "param": param}
        answer, retry_after = self._read_post(form, f"{com} {num}")
        code = answer.get("returnCode")
        if answer.get("result") is False or (code is not None and "data" not in answer):
            raise self._query_refused(str(code), str(answer.get("message") or ""), f"{com} {num}", retry_after)
        try:
            record = record_from_track(self.system, answer, "query answer")
        except InvalidValue as exc:
            raise ConnectorError(f"{self.system}: Kuaidi100 answered the query for {com} {num} with a track the "
                                 f"hub cannot read: {exc}") from None
        if record is None:
            raise RecordNotFound(f"{self.system}: Kuaidi100 has no checkpoint for {com} {num} yet")
        return [record]

    def read_all(self, since: datetime | None = None) -> Iterator[SourceRecord]:
        raise BulkReadUnavailable(f"{self.system}: Kuaidi100 has no bulk export (parcels are pushed one by one, "
                                  f"and the real-time query reads one parcel), so {self.system} cannot be "
                                  "reconciled")
        yield  # pragma: no cover (a generator, like every read_all: it raises when iterated)

    def _read_post(self, form: Mapping[str, str], parcel: str) -> tuple[dict[str, Any], float | None]:
        try:
            response = self.client.post(self.base_url + QUERY_PATH, data=dict(form))
        except httpx.HTTPError as exc:
            raise TransientReadError(f"{self.system}: Kuaidi100 did not answer the query for {parcel}: "
                                     f"{type(exc).__name__}") from None
        retry_after = parse_retry_after(response.headers.get("retry-after"), time.time())
        if response.status_code == 429 or response.status_code >= 500:
            raise TransientReadError(f"{self.system}: Kuaidi100 answered HTTP {response.status_code} to the query "
                                     f"for {parcel}", retry_after)
        if not response.is_success:
            raise ConnectorError(f"{self.system}: Kuaidi100 answered HTTP {response.status_code} to the query for "
                                 f"{parcel}")
        try:
            answer = response.json()
        except ValueError:
            raise ConnectorError(f"{self.system}: Kuaidi100 answered the query for {parcel} with something not "
                                 "JSON") from None
        if not isinstance(answer, dict):
            raise ConnectorError(f"{self.system}: Kuaidi100 answered the query for {parcel} with a "
                                 f"{type(answer).__name__}")
        return answer, retry_after

    def _query_refused(self, code: str, message: str, parcel: str, retry_after: float | None) -> ConnectorError:
        said = f"{code}: {self._scrub(message) or QUERY_CODES.get(code, 'no message')}"
        if code == "500":
            return RecordNotFound(f"{self.system}: Kuaidi100 has no tracking for {parcel} ({said})")
        if code == "503":
            return ConnectorError(f"{self.system}: Kuaidi100 refused the query's signature ({said}): check that the "
                                  f"key in credentials_env and the customer id in ${self._customer_env} are the "
                                  "pair of one Kuaidi100 enterprise account")
        if code == "601":
            return ConnectorError(f"{self.system}: Kuaidi100 says the key has expired ({said}): renew the account or "
                                  "put a current key in the variable credentials_env names")
        if code == "400":
            return ConnectorError(f"{self.system}: Kuaidi100 refused the query for {parcel} ({said}): check the "
                                  f"company code, the customer id in ${self._customer_env}, and the account's "
                                  "remaining queries")
        if code in _RETRY_CODES or code.startswith("5"):
            return TransientReadError(f"{self.system}: Kuaidi100 could not answer the query for {parcel} now "
                                      f"({said})", retry_after)
        return ConnectorError(f"{self.system}: Kuaidi100 refused the query for {parcel} ({said})")

    # ---- writes: subscriptions ------------------------------------------------------------------------

    def write(self, request: WriteRequest) -> WriteResult:
        """Subscribe the parcel the fields name (with the record's own company or waybill where one is not
        given); subscribing again is harmless, Kuaidi100 answers 501 for a parcel it already tracks."""
        return self._subscribe(request)

    def create(self, request: WriteRequest) -> WriteResult:
        return self._subscribe(request)

    def _subscribe(self, request: WriteRequest) -> WriteResult:
        known = split_local_id(request.local_id) if request.local_id else None
        com = _given(request.fields.get("com")) or (known[0] if known else None)
        num = _given(request.fields.get("num")) or (known[1] if known else None)
        phone = _given(request.fields.get("phone"))
        if not num:
            return WriteResult(None, error="no waybill to subscribe: the WMS must set shipment.waybill (mapped to "
                                           "`num`) before Kuaidi100 can track the parcel", permanent=True)
        if not com:
            return WriteResult(None, error=f"no courier company code for waybill {num}: the WMS must set "
                                           "shipment.carrier (mapped to `com`) before Kuaidi100 can track it",
                               permanent=True)
        if len(num) > MAX_NUMBER_LENGTH:
            return WriteResult(None, error=f"waybill `{num[:40]}` is longer than Kuaidi100's {MAX_NUMBER_LENGTH} "
                                           "characters", permanent=True)
        parameters = {"callbackurl": self.callback_url, "salt": self._salt, "resultv2": "1"}
        if phone:
            parameters["phone"] = phone
        param = compact_json({"company": com, "number": num, "key": self._key, "parameters": parameters})
        where = f"subscribing {com} {num}"
        try:
            response = self.client.post(self.base_url + SUBSCRIBE_PATH, data={"schema": "json", "param": param})
        except httpx.TimeoutException as exc:
            return WriteResult(None, error=f"{where}: timed out: {type(exc).__name__}")
        except httpx.HTTPError as exc:
            return WriteResult(None, error=f"{where}: no answer: {type(exc).__name__}")
        retry_after = parse_retry_after(response.headers.get("retry-after"), time.time())
        if not response.is_success:
            return WriteResult(response.status_code, retry_after,
                               f"{where}: HTTP {response.status_code}: {self._scrub(response.text[:200])}")
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            return WriteResult(502, retry_after, f"{where}: Kuaidi100 answered with something not a JSON object")
        code = str(answer.get("returnCode") or ("200" if answer.get("result") is True else ""))
        if code in SUBSCRIBED:
            return WriteResult(200, local_id=f"{com}:{num}")
        said = f"{code or '?'}: {self._scrub(str(answer.get('message') or '')) or SUBSCRIBE_CODES.get(code, '')}"
        if code == "502":
            return WriteResult(429, retry_after, f"{where}: Kuaidi100 is busy ({said})")
        if code.startswith("5"):
            return WriteResult(503, retry_after, f"{where}: Kuaidi100 server error ({said})")
        fixes = {"600": "check the key in the variable credentials_env names",
                 "601": "the key has expired: renew the account or set a current key in credentials_env",
                 "700": f"check the company code `{com}` (the WMS's carrier, mapped by `write_values`), the "
                        "waybill, and callback_url",
                 "701": f"Kuaidi100 does not track company `{com}` by subscription",
                 "702": "Kuaidi100 cannot tell the company of this waybill"}
        fix = fixes.get(code, "see Kuaidi100's subscription return codes")
        status = 401 if code in ("600", "601") else 422
        return WriteResult(status, error=f"{where}: Kuaidi100 refused the subscription ({said}): {fix}",
                           permanent=True)

    def _scrub(self, text: str) -> str:
        """A vendor's text with our secrets blanked out, in case it ever echoes what it was sent."""
        for secret in (self._key, self._customer, self._salt):
            if secret:
                text = text.replace(secret, "***")
        return text.strip()


def _given(value: Any) -> str | None:
    """A field's text, None when absent or blank (then the record's own value stands)."""
    return (value.strip() or None) if isinstance(value, str) else None
