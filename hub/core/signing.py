"""Webhook signatures: Standard Webhooks, and the vendor schemes a connector may declare instead. Pure: no I/O.

A verifier takes the system's active secrets (several during a rotation), the request headers, the raw
body and the current unix time; it returns the event id to dedupe on, or raises `SignatureError` whose
message says what is wrong and never contains a secret or a signature value.

Standard Webhooks (https://www.standardwebhooks.com):
    webhook-id: msg_2KWPBgLlAfxdpx2AI54pPJ85f4W
    webhook-timestamp: 1674087231                       (unix seconds; ±5 minutes by default)
    webhook-signature: v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")> [v1,<…> …]
A secret `whsec_<base64>` is the base64-decoded key; any other secret is its UTF-8 bytes. The official
libraries base64-decode unprefixed secrets too, so share secrets with other tools in the `whsec_` form.

BottleCRM (connector type "bottlecrm"):
    X-BottleCRM-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "{t}.{body}")>[,v1=<…>]
    X-BottleCRM-Delivery: <delivery id, the event id>
The secret is used as the vendor issues it (its UTF-8 bytes).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from hub.core.errors import TickethubError

DEFAULT_TOLERANCE = 300.0  # seconds either side of the receiver's clock
STANDARD_SECRET_PREFIX = "whsec_"
_UNIX_SECONDS = re.compile(r"^[0-9]{1,12}$")


class SignatureError(TickethubError):
    """A webhook whose signature is missing, forged or stale: the message says which, never a secret."""


class Verifier(Protocol):
    """Check a webhook's signature; return the event id to dedupe on, or raise SignatureError."""

    def __call__(self, secrets: Sequence[str], headers: Mapping[str, str], body: bytes, now: float, *,
                 tolerance: float = DEFAULT_TOLERANCE) -> str: ...


# ---- Standard Webhooks ---------------------------------------------------------------------------

def standard_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret; ValueError (naming no secret) if it cannot be one."""
    if not secret.startswith(STANDARD_SECRET_PREFIX):
        key = secret.encode("utf-8")
    else:
        encoded = secret[len(STANDARD_SECRET_PREFIX):]
        try:  # unpadded base64 is common in the wild; add the padding back before a strict decode
            key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("a secret starting with whsec_ must be base64 after the prefix") from None
    if not key:
        raise ValueError("a webhook secret must not be empty")
    return key


def _standard_digest(key: bytes, msg_id: str, timestamp: int | str, body: bytes) -> bytes:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return hmac.new(key, signed, hashlib.sha256).digest()


def sign_standard(secret: str, msg_id: str, timestamp: int, body: bytes | str) -> str:
    """The `webhook-signature` header value (`v1,<base64>`) for one message."""
    raw = body.encode("utf-8") if isinstance(body, str) else body
    digest = _standard_digest(standard_key(secret), msg_id, timestamp, raw)
    return "v1," + base64.b64encode(digest).decode("ascii")


def verify_standard(secrets: Sequence[str], headers: Mapping[str, str], body: bytes, now: float, *,
                    tolerance: float = DEFAULT_TOLERANCE) -> str:
    """Check a Standard Webhooks signature against every active secret; return the `webhook-id`."""
    found = _lowered(headers)
    msg_id, stamp, signature = (_required(found, name) for name in
                                ("webhook-id", "webhook-timestamp", "webhook-signature"))
    _check_timestamp("webhook-timestamp", stamp, now, tolerance)
    offered = []
    for entry in signature.split():
        version, _, value = entry.partition(",")
        if version != "v1":
            continue  # other versions (v1a asymmetric, future ones) are not ours to check
        try:
            offered.append(base64.b64decode(value, validate=True))
        except ValueError:  # binascii.Error, or non-ASCII text: cannot match, like a wrong value
            continue
    if not offered:
        raise SignatureError("header webhook-signature holds no v1 signature (expected `v1,<base64>`)")
    keys = _keys(secrets, standard_key)
    for key in keys:
        expected = _standard_digest(key, msg_id, stamp, body)
        if any(hmac.compare_digest(expected, candidate) for candidate in offered):
            return msg_id
    raise SignatureError(f"no v1 signature in webhook-signature matches any of the {len(keys)} active secret(s)")


# ---- BottleCRM -----------------------------------------------------------------------------------

BOTTLECRM_SIGNATURE = "X-BottleCRM-Signature"
BOTTLECRM_DELIVERY = "X-BottleCRM-Delivery"


def _bottlecrm_key(secret: str) -> bytes:
    if not secret:
        raise ValueError("a webhook secret must not be empty")
    return secret.encode("utf-8")


def _bottlecrm_hex(key: bytes, timestamp: int | str, body: bytes) -> str:
    return hmac.new(key, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign_bottlecrm(secret: str, timestamp: int, body: bytes | str) -> str:
    """The `X-BottleCRM-Signature` header value (`t=<unix>,v1=<hex>`) for one delivery."""
    raw = body.encode("utf-8") if isinstance(body, str) else body
    return f"t={timestamp},v1={_bottlecrm_hex(_bottlecrm_key(secret), timestamp, raw)}"


def verify_bottlecrm(secrets: Sequence[str], headers: Mapping[str, str], body: bytes, now: float, *,
                     tolerance: float = DEFAULT_TOLERANCE) -> str:
    """Check BottleCRM's native signature against every active secret; return the delivery id."""
    found = _lowered(headers)
    delivery = _required(found, BOTTLECRM_DELIVERY.lower(), BOTTLECRM_DELIVERY)
    signature = _required(found, BOTTLECRM_SIGNATURE.lower(), BOTTLECRM_SIGNATURE)
    stamps, offered = [], []
    for part in signature.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t":
            stamps.append(value)
        elif name == "v1":
            offered.append(value.lower().encode("utf-8", "replace"))
    if len(stamps) != 1 or not offered:
        raise SignatureError(f"header {BOTTLECRM_SIGNATURE} must be `t=<unix seconds>,v1=<hex>`")
    _check_timestamp(f"{BOTTLECRM_SIGNATURE} t", stamps[0], now, tolerance)
    keys = _keys(secrets, _bottlecrm_key)
    for key in keys:
        expected = _bottlecrm_hex(key, stamps[0], body).encode("ascii")
        if any(hmac.compare_digest(expected, candidate) for candidate in offered):
            return delivery
    raise SignatureError(f"no v1 signature in {BOTTLECRM_SIGNATURE} matches any of the {len(keys)} active secret(s)")


# ---- registry ------------------------------------------------------------------------------------

VERIFIERS: dict[str, Verifier] = {
    "generic": verify_standard,
    "bottlecrm": verify_bottlecrm,
}


def verifier_for(connector_type: str) -> Verifier:
    """The connector type's declared scheme; Standard Webhooks for a type that declares none."""
    return VERIFIERS.get(connector_type, verify_standard)


# ---- shared pieces -------------------------------------------------------------------------------

def _lowered(headers: Mapping[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def _required(headers: Mapping[str, str], name: str, shown: str | None = None) -> str:
    value = headers.get(name, "").strip()
    if not value:
        raise SignatureError(f"missing header {shown or name}")
    return value


def _check_timestamp(what: str, stamp: str, now: float, tolerance: float) -> None:
    if not _UNIX_SECONDS.match(stamp):
        raise SignatureError(f"{what} is not a unix time in whole seconds")
    skew = int(stamp) - now
    if abs(skew) > tolerance:
        direction = "old" if skew < 0 else "far in the future"
        raise SignatureError(f"{what} is too {direction}: {abs(skew):.0f} s from the hub's clock, beyond the "
                             f"{tolerance:.0f} s tolerance (a replay, or the sender's clock is wrong)")


def _keys(secrets: Sequence[str], to_key: Callable[[str], bytes]) -> list[bytes]:
    keys = []
    for secret in secrets:
        try:
            keys.append(to_key(secret))
        except ValueError:
            continue  # a malformed secret matches nothing; configuration loading reports it by name
    if not keys:
        raise SignatureError("no webhook secret is configured for this system")
    return keys
