"""BottleCRM's webhook signature, the vendor scheme its connector type declares. Pure: no I/O.

    X-BottleCRM-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "{t}.{body}")>[,v1=<…>]
    X-BottleCRM-Delivery: <delivery id, the event id>

The secret is used as the vendor issues it (its UTF-8 bytes).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence

from hub.core.signing import (
    DEFAULT_TOLERANCE,
    SignatureError,
    SignatureScheme,
    active_keys,
    check_timestamp,
    lowered,
    required_header,
)

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
    found = lowered(headers)
    delivery = required_header(found, BOTTLECRM_DELIVERY.lower(), BOTTLECRM_DELIVERY)
    signature = required_header(found, BOTTLECRM_SIGNATURE.lower(), BOTTLECRM_SIGNATURE)
    stamps, offered = [], []
    for part in signature.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t":
            stamps.append(value)
        elif name == "v1":
            offered.append(value.lower().encode("utf-8", "replace"))
    if len(stamps) != 1 or not offered:
        raise SignatureError(f"header {BOTTLECRM_SIGNATURE} must be `t=<unix seconds>,v1=<hex>`")
    check_timestamp(f"{BOTTLECRM_SIGNATURE} t", stamps[0], now, tolerance)
    keys = active_keys(secrets, _bottlecrm_key)
    for key in keys:
        expected = _bottlecrm_hex(key, stamps[0], body).encode("ascii")
        if any(hmac.compare_digest(expected, candidate) for candidate in offered):
            return delivery
    raise SignatureError(f"no v1 signature in {BOTTLECRM_SIGNATURE} matches any of the {len(keys)} active secret(s)")


BOTTLECRM_SCHEME = SignatureScheme("bottlecrm", verify_bottlecrm, _bottlecrm_key)
