"""Webhook signatures: the Standard Webhooks scheme, and the pieces a vendor's scheme is built from. Pure.

A verifier takes the system's active secrets (several during a rotation), the request headers, the raw
body and the current unix time; it returns the event id to dedupe on, or raises `SignatureError` whose
message says what is wrong and never contains a secret or a signature value. A connector type declares
its inbound scheme (`SignatureScheme`); a type that declares none uses Standard Webhooks.

Standard Webhooks (https://www.standardwebhooks.com):
    webhook-id: msg_2KWPBgLlAfxdpx2AI54pPJ85f4W
    webhook-timestamp: 1674087231                       (unix seconds; ±5 minutes by default)
    webhook-signature: v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")> [v1,<…> …]
A secret `whsec_<base64>` is the base64-decoded key; any other secret is its UTF-8 bytes. The official
libraries base64-decode unprefixed secrets too, so share secrets with other tools in the `whsec_` form.
The signature itself is computed by the `standardwebhooks` package (the scheme's reference library); its
`Webhook.verify` is not used as it is: it reads the wall clock (the hub's clock is injected), has a fixed
tolerance, one secret at a time, and one message for every refusal.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from standardwebhooks import Webhook

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


@dataclass(frozen=True)
class SignatureScheme:
    """How a connector type's inbound webhooks are signed: the verifier, and how a configured secret becomes
    a key (ValueError, naming no secret, for one that cannot be; checked once at start)."""

    name: str
    verify: Verifier
    key: Callable[[str], bytes]


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


def _standard_signature(key: bytes, msg_id: str, timestamp: int | str, body: bytes) -> bytes:
    """`v1,<base64>` for one message, as the reference library signs it."""
    when = datetime.fromtimestamp(int(timestamp), UTC)
    return Webhook(key).sign(msg_id, when, body).encode("ascii")


def sign_standard(secret: str, msg_id: str, timestamp: int, body: bytes | str) -> str:
    """The `webhook-signature` header value (`v1,<base64>`) for one message."""
    raw = body.encode("utf-8") if isinstance(body, str) else body
    return _standard_signature(standard_key(secret), msg_id, timestamp, raw).decode("ascii")


def verify_standard(secrets: Sequence[str], headers: Mapping[str, str], body: bytes, now: float, *,
                    tolerance: float = DEFAULT_TOLERANCE) -> str:
    """Check a Standard Webhooks signature against every active secret; return the `webhook-id`."""
    found = lowered(headers)
    msg_id, stamp, signature = (required_header(found, name) for name in
                                ("webhook-id", "webhook-timestamp", "webhook-signature"))
    check_timestamp("webhook-timestamp", stamp, now, tolerance)
    offered = []
    for entry in signature.split():
        version, _, value = entry.partition(",")
        if version != "v1":
            continue  # other versions (v1a asymmetric, future ones) are not ours to check
        try:
            offered.append(b"v1," + base64.b64encode(base64.b64decode(value, validate=True)))
        except ValueError:  # binascii.Error, or non-ASCII text: cannot match, like a wrong value
            continue
    if not offered:
        raise SignatureError("header webhook-signature holds no v1 signature (expected `v1,<base64>`)")
    keys = active_keys(secrets, standard_key)
    for key in keys:
        expected = _standard_signature(key, msg_id, stamp, body)
        if any(hmac.compare_digest(expected, candidate) for candidate in offered):
            return msg_id
    raise SignatureError(f"no v1 signature in webhook-signature matches any of the {len(keys)} active secret(s)")


STANDARD_WEBHOOKS = SignatureScheme("standard-webhooks", verify_standard, standard_key)


# ---- pieces every scheme uses -------------------------------------------------------------------------------

def lowered(headers: Mapping[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def required_header(headers: Mapping[str, str], name: str, shown: str | None = None) -> str:
    value = headers.get(name, "").strip()
    if not value:
        raise SignatureError(f"missing header {shown or name}")
    return value


def check_timestamp(what: str, stamp: str, now: float, tolerance: float) -> None:
    if not _UNIX_SECONDS.match(stamp):
        raise SignatureError(f"{what} is not a unix time in whole seconds")
    skew = int(stamp) - now
    if abs(skew) > tolerance:
        direction = "old" if skew < 0 else "far in the future"
        raise SignatureError(f"{what} is too {direction}: {abs(skew):.0f} s from the hub's clock, beyond the "
                             f"{tolerance:.0f} s tolerance (a replay, or the sender's clock is wrong)")


def active_keys(secrets: Sequence[str], to_key: Callable[[str], bytes]) -> list[bytes]:
    keys = []
    for secret in secrets:
        try:
            keys.append(to_key(secret))
        except ValueError:
            continue  # a malformed secret matches nothing; configuration loading reports it by name
    if not keys:
        raise SignatureError("no webhook secret is configured for this system")
    return keys
