"""Webhook signatures: Standard Webhooks (official vector, rotation, every refusal) and BottleCRM's scheme."""

from __future__ import annotations

import base64

import pytest

from connectors.bottlecrm.signing import BOTTLECRM_SCHEME, sign_bottlecrm, verify_bottlecrm
from hub.core.errors import TickethubError
from hub.core.signing import STANDARD_WEBHOOKS, SignatureError, sign_standard, standard_key, verify_standard
from hub.registry import connector_type

pytestmark = pytest.mark.unit

SECRET = "whsec_" + base64.b64encode(b"a key for tests, thirty-two bytes").decode()
OLD_SECRET = "plain-old-secret"
NOW = 1_770_975_000
BODY = b'{"local_id": "CASE-1", "fields": {}}'


def headers(secret: str = SECRET, msg_id: str = "msg_1", timestamp: int = NOW, body: bytes = BODY) -> dict[str, str]:
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": sign_standard(secret, msg_id, timestamp, body)}


def test_official_standard_webhooks_vector() -> None:
    """sign_standard reproduces the Standard Webhooks reference library's test vector, and it verifies."""
    # standard-webhooks/standard-webhooks, libraries/python/tests/test_webhooks.py::test_sign_function
    secret, msg_id, timestamp = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330
    payload = '{"test": 2432232314}'
    expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert sign_standard(secret, msg_id, timestamp, payload) == expected
    sent = {"webhook-id": msg_id, "webhook-timestamp": str(timestamp), "webhook-signature": expected}
    assert verify_standard([secret], sent, payload.encode(), now=timestamp) == msg_id


def test_standard_round_trip_returns_the_webhook_id() -> None:
    """A message signed with a secret verifies with that secret and yields its webhook-id."""
    assert verify_standard([SECRET], headers(msg_id="msg_42"), BODY, NOW) == "msg_42"


def test_plain_secret_is_used_as_its_utf8_bytes() -> None:
    """A secret without the whsec_ prefix is the key as it is written."""
    assert standard_key("café") == "café".encode()
    assert verify_standard([OLD_SECRET], headers(OLD_SECRET), BODY, NOW) == "msg_1"


def test_whsec_secret_accepts_unpadded_base64() -> None:
    """whsec_ secrets with their base64 padding left off decode to the same key."""
    assert standard_key(SECRET.rstrip("=")) == standard_key(SECRET)


@pytest.mark.parametrize(("secret", "words"), [
    ("whsec_not base64!", "must be base64"), ("whsec_", "must not be empty"), ("", "must not be empty")])
def test_malformed_secret_is_refused_without_echoing_it(secret: str, words: str) -> None:
    """A secret that cannot be a key raises ValueError saying why, without repeating the secret."""
    with pytest.raises(ValueError, match=words) as caught:
        standard_key(secret)
    assert "not base64!" not in str(caught.value)


def test_rotation_accepts_old_and_new_secret() -> None:
    """With two active secrets, messages signed with either verify."""
    active = [SECRET, OLD_SECRET]
    assert verify_standard(active, headers(SECRET), BODY, NOW) == "msg_1"
    assert verify_standard(active, headers(OLD_SECRET), BODY, NOW) == "msg_1"


def test_any_listed_v1_signature_may_match() -> None:
    """The signature header may list several signatures and other versions; one valid v1 is enough."""
    sent = headers()
    sent["webhook-signature"] = " ".join([
        "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=", "v1a,c29tZXRoaW5n", "v1,%%not-base64%%",
        sent["webhook-signature"]])
    assert verify_standard([SECRET], sent, BODY, NOW) == "msg_1"


def test_header_names_are_case_insensitive() -> None:
    """Headers as HTTP sends them (any case) are found."""
    sent = {name.title(): value for name, value in headers().items()}
    assert verify_standard([SECRET], sent, BODY, NOW) == "msg_1"


def test_timestamp_within_tolerance_passes_and_tolerance_is_configurable() -> None:
    """Five minutes either way pass by default; a smaller tolerance refuses what the default allows."""
    assert verify_standard([SECRET], headers(timestamp=NOW - 300), BODY, NOW) == "msg_1"
    assert verify_standard([SECRET], headers(timestamp=NOW + 300), BODY, NOW) == "msg_1"
    with pytest.raises(SignatureError, match="too old"):
        verify_standard([SECRET], headers(timestamp=NOW - 60), BODY, NOW, tolerance=30)


@pytest.mark.parametrize(("change", "words"), [
    (lambda h: h.pop("webhook-id"), "missing header webhook-id"),
    (lambda h: h.pop("webhook-timestamp"), "missing header webhook-timestamp"),
    (lambda h: h.pop("webhook-signature"), "missing header webhook-signature"),
    (lambda h: h.update({"webhook-timestamp": "hello"}), "not a unix time"),
    (lambda h: h.update({"webhook-timestamp": "1.5e9"}), "not a unix time"),
    (lambda h: h.update({"webhook-signature": "v2,abc"}), "holds no v1 signature"),
])
def test_malformed_headers_say_what_is_missing(change: object, words: str) -> None:
    """Each missing or malformed header is named in the error."""
    sent = headers()
    change(sent)  # type: ignore[operator]
    with pytest.raises(SignatureError, match=words):
        verify_standard([SECRET], sent, BODY, NOW)


@pytest.mark.parametrize(("offset", "words"), [(-301, "too old"), (301, "too far in the future")])
def test_stale_or_future_timestamp_is_refused(offset: int, words: str) -> None:
    """A correctly signed message outside the tolerance is refused as a replay or a wrong clock."""
    with pytest.raises(SignatureError, match=words):
        verify_standard([SECRET], headers(timestamp=NOW + offset), BODY, NOW + 0)


@pytest.mark.parametrize("tamper", ["body", "id", "timestamp", "secret"])
def test_forged_signature_is_refused_without_leaking_values(tamper: str) -> None:
    """Changing the body, id or timestamp, or signing with an unknown secret, fails; the error shows no
    secret and no signature."""
    sent = headers(secret="whsec_" + base64.b64encode(b"someone else").decode() if tamper == "secret" else SECRET)
    body = BODY + b" " if tamper == "body" else BODY
    if tamper == "id":
        sent["webhook-id"] = "msg_2"
    if tamper == "timestamp":
        sent["webhook-timestamp"] = str(NOW + 1)
    with pytest.raises(SignatureError, match="no v1 signature .* matches any of the 1 active") as caught:
        verify_standard([SECRET], sent, body, NOW)
    message = str(caught.value)
    assert SECRET not in message and SECRET.removeprefix("whsec_") not in message
    assert sent["webhook-signature"].removeprefix("v1,") not in message


def test_no_configured_secret_is_refused() -> None:
    """With no usable secret, nothing verifies."""
    with pytest.raises(SignatureError, match="no webhook secret"):
        verify_standard([], headers(), BODY, NOW)


def test_signature_error_belongs_to_the_hub_error_tree() -> None:
    """Callers can catch every deliberate hub error with TickethubError."""
    assert issubclass(SignatureError, TickethubError)


# ---- BottleCRM -----------------------------------------------------------------------------------

def bottle_headers(secret: str = OLD_SECRET, timestamp: int = NOW, body: bytes = BODY) -> dict[str, str]:
    return {"X-BottleCRM-Signature": sign_bottlecrm(secret, timestamp, body), "X-BottleCRM-Delivery": "dlv-7"}


def test_bottlecrm_signature_is_hex_hmac_of_timestamp_and_body() -> None:
    """The header is `t=<unix>,v1=<hex HMAC-SHA256(secret, "t.body")>`, computed independently here."""
    import hashlib
    import hmac

    expected = hmac.new(b"s3cret", b"1700000000.{}", hashlib.sha256).hexdigest()
    assert sign_bottlecrm("s3cret", 1700000000, b"{}") == f"t=1700000000,v1={expected}"


def test_bottlecrm_round_trip_returns_the_delivery_id_and_rotates() -> None:
    """A BottleCRM delivery verifies with either active secret and yields X-BottleCRM-Delivery."""
    for secret in (OLD_SECRET, "new-secret"):
        assert verify_bottlecrm([OLD_SECRET, "new-secret"], bottle_headers(secret), BODY, NOW) == "dlv-7"


@pytest.mark.parametrize(("change", "words"), [
    (lambda h: h.pop("X-BottleCRM-Delivery"), "missing header X-BottleCRM-Delivery"),
    (lambda h: h.pop("X-BottleCRM-Signature"), "missing header X-BottleCRM-Signature"),
    (lambda h: h.update({"X-BottleCRM-Signature": "v1=abc"}), "must be `t=<unix seconds>,v1=<hex>`"),
    (lambda h: h.update({"X-BottleCRM-Signature": f"t={NOW - 400},v1=00"}), "too old"),
    (lambda h: h.update({"X-BottleCRM-Signature": f"t={NOW},v1=" + "0" * 64}), "no v1 signature"),
    (lambda h: h.update({"X-BottleCRM-Signature": f"t={NOW},v1=é"}), "no v1 signature"),
])
def test_bottlecrm_refusals_say_what_is_wrong(change: object, words: str) -> None:
    """Missing headers, a malformed header, a stale time and a wrong signature are each named."""
    sent = bottle_headers()
    change(sent)  # type: ignore[operator]
    with pytest.raises(SignatureError, match=words):
        verify_bottlecrm([OLD_SECRET], sent, BODY, NOW)


def test_connector_types_declare_their_schemes() -> None:
    """generic uses Standard Webhooks, bottlecrm its own scheme, and a type that declares none the standard."""
    assert connector_type("generic").signature is STANDARD_WEBHOOKS
    assert connector_type("bottlecrm").signature is BOTTLECRM_SCHEME
    assert BOTTLECRM_SCHEME.verify is verify_bottlecrm
    assert connector_type("tryton").signature is STANDARD_WEBHOOKS
