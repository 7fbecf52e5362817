"""Kuaidi100's push callback as the hub receives it: the signature, the body and the answer. Pure.

    POST /webhooks/<system>
    Content-Type: application/x-www-form-urlencoded
    param=<JSON: status, message, lastResult{...}>&sign=<upper-case hex MD5 of param + salt>

The salt is the webhook secret the hub gave when it subscribed the parcel (the system's first active
secret; every active one is tried, so a rotation keeps older subscriptions verifiable). The push carries no
timestamp and no delivery id: the event id is derived from `param`, so an exact re-push is a duplicate and
any new checkpoint is a new event. Kuaidi100 retries until it gets `{"result": true, "returnCode": "200"}`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from typing import Any

from connectors.kuaidi100.wire import FORM_TYPE, encode_form, parse_form, push_sign, single
from hub.core.errors import InvalidValue
from hub.core.plugin import InboundFormat, UnsupportedBody
from hub.core.signing import DEFAULT_TOLERANCE, SignatureError, SignatureScheme, active_keys

EVENT_PREFIX = "k100-"
ACKNOWLEDGED: Mapping[str, Any] = {"result": True, "returnCode": "200", "message": "成功"}


def salt_key(secret: str) -> bytes:
    """A salt as the MD5 recipe appends it; ValueError (naming no secret) for one that cannot be a salt."""
    if not secret:
        raise ValueError("a Kuaidi100 salt must not be empty")
    return secret.encode("utf-8")


def event_id(param: str) -> str:
    """The id a push is deduplicated on: the same `param` is the same event."""
    return EVENT_PREFIX + hashlib.md5(param.encode("utf-8")).hexdigest()


def push_body(param: str, salt: str | None) -> bytes:
    """The form Kuaidi100 posts for `param`: signed with the salt (unsigned when it was subscribed without)."""
    fields = {"param": param}
    if salt is not None:
        fields["sign"] = push_sign(param, salt)
    return encode_form(fields)


def verify_kuaidi100(secrets: Sequence[str], headers: Mapping[str, str], body: bytes, now: float, *,
                     tolerance: float = DEFAULT_TOLERANCE) -> str:
    """Check a push's `sign` against every active salt; return its event id. The push has no timestamp, so
    `now` and `tolerance` do not apply: a replay of an accepted push is a duplicate."""
    try:
        form = parse_form(body)
        param, sign = single(form, "param"), single(form, "sign")
    except ValueError:
        raise SignatureError("body is not a UTF-8 form with single fields `param` and `sign`") from None
    if param is None:
        raise SignatureError("missing form field param")
    if not sign or not sign.strip():
        raise SignatureError("missing form field sign")
    offered = sign.strip().upper().encode("utf-8")
    keys = active_keys(secrets, salt_key)
    for key in keys:
        expected = hashlib.md5(param.encode("utf-8") + key).hexdigest().upper().encode("ascii")
        if hmac.compare_digest(expected, offered):
            return event_id(param)
    raise SignatureError(f"form field sign matches none of the {len(keys)} active salt(s)")


KUAIDI100_SCHEME = SignatureScheme("kuaidi100", verify_kuaidi100, salt_key)


def decode_push(headers: Mapping[str, str], body: bytes) -> Any:
    """The push's `param` as JSON (what the inbox stores and `parse_notices` reads)."""
    media, *params = (part.strip().lower() for part in headers.get("content-type", "").split(";"))
    if media != FORM_TYPE:
        shown = f"`{media}`" if media else "missing"
        raise UnsupportedBody(f"Content-Type is {shown}; Kuaidi100 pushes {FORM_TYPE}")
    for item in params:
        name, _, value = item.partition("=")
        if name.strip() == "charset" and value.strip().strip('"') not in ("utf-8", "utf8"):
            raise UnsupportedBody(f"charset `{value.strip()}` is not accepted; Kuaidi100 pushes utf-8")
    try:
        param = single(parse_form(body), "param")
    except ValueError as exc:
        raise InvalidValue(f"body is not a UTF-8 form: {exc}") from None
    if param is None:
        raise InvalidValue("form field param is missing")
    try:
        payload = json.loads(param, parse_constant=_no_constant)
    except RecursionError:
        raise InvalidValue("form field param nests too deep") from None
    except ValueError as exc:  # JSONDecodeError, NaN/Infinity, an integer too long to convert
        raise InvalidValue(f"form field param is not JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise InvalidValue("form field param must be a JSON object")
    return payload


def reply_push(status: int, _event_id: str | None, _duplicate: bool, reason: str) -> tuple[int, Mapping[str, Any]]:
    """Stored (new or a duplicate): Kuaidi100's acknowledgement with HTTP 200, so it stops pushing. Refused:
    the hub's status, in Kuaidi100's shape, with what is wrong."""
    if 200 <= status < 300:
        return 200, ACKNOWLEDGED
    return status, {"result": False, "returnCode": str(status), "message": reason}


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


KUAIDI100_INBOUND = InboundFormat(decode=decode_push, reply=reply_push)
