"""Kuaidi100's signatures, checked against values computed here from the documented recipes (hashlib, not the
connector's helpers): the query's sign, the subscription's form, the push's sign; and the push body and the
acknowledgement the intake gives."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any
from urllib.parse import parse_qs, urlencode

import httpx
import pytest

from connectors.kuaidi100.connector import Kuaidi100Connector
from connectors.kuaidi100.push import KUAIDI100_INBOUND, KUAIDI100_SCHEME, event_id, push_body, salt_key
from connectors.kuaidi100.wire import push_sign, query_sign
from hub.core.errors import InvalidValue
from hub.core.plugin import UnsupportedBody
from hub.core.ports import WriteRequest
from hub.core.signing import SignatureError

KEY, CUSTOMER, SALT = "K3yFromTheAccount", "0A1B2C3D4E5F60718293A4B5C6D7E8F9", "salt-for-pushes-42"
PARAM = '{"status":"polling","message":"","lastResult":{"com":"shunfeng","nu":"SF1"}}'


def md5_upper(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest().upper()


def form(body: bytes) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(body.decode(), keep_blank_values=True).items()}


def capturing() -> tuple[httpx.Client, list[httpx.Request], list[Any]]:
    """A client that records requests and answers with the queued JSON bodies."""
    seen: list[httpx.Request] = []
    answers: list[Any] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=answers.pop(0))

    return httpx.Client(transport=httpx.MockTransport(handle)), seen, answers


def connector(client: httpx.Client) -> Kuaidi100Connector:
    return Kuaidi100Connector("courier", "https://poll.kuaidi100.com", KEY, CUSTOMER, SALT,
                              "https://hub.example.com/webhooks/courier", client)


# ---- the real-time query ------------------------------------------------------------------------------------


def test_the_query_sign_is_upper_case_md5_of_param_key_customer() -> None:
    """For a fixed param, key and customer the sign is the documented MD5, in upper case."""
    param = '{"com":"yuantong","num":"YT9693083639795","resultv2":"1"}'
    expected = hashlib.md5((param + KEY + CUSTOMER).encode("utf-8")).hexdigest().upper()
    assert query_sign(param, KEY, CUSTOMER) == expected
    assert expected == md5_upper(param + KEY + CUSTOMER) and expected.isupper() and len(expected) == 32


def test_the_query_the_connector_sends_is_the_documented_form() -> None:
    """POST /poll/query.do, a form of customer, compact JSON param and the sign of exactly that param."""
    client, seen, answers = capturing()
    answers.append({"message": "ok", "state": "0", "status": "200", "ischeck": "0", "com": "shunfeng", "nu": "SF1",
                    "data": [{"time": "2026-02-13 18:00:00", "ftime": "2026-02-13 18:00:00", "context": "运输中"}]})
    connector(client).read("shunfeng:SF1")
    [request] = seen
    assert request.method == "POST" and str(request.url) == "https://poll.kuaidi100.com/poll/query.do"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    sent = form(request.content)
    assert set(sent) == {"customer", "sign", "param"} and sent["customer"] == CUSTOMER
    assert sent["param"] == '{"com":"shunfeng","num":"SF1","resultv2":"1"}'
    assert sent["sign"] == md5_upper(sent["param"] + KEY + CUSTOMER)


def test_the_subscription_the_connector_sends_is_the_documented_form() -> None:
    """POST /poll, schema=json and a compact param with company, number, key and parameters (callbackurl,
    salt, resultv2, and the phone when one is written)."""
    client, seen, answers = capturing()
    answers.append({"result": True, "returnCode": "200", "message": "提交成功"})
    result = connector(client).write(WriteRequest(1, "20261204-SVC-00001", "courier", None,
                                                  {"num": "SF1", "com": "shunfeng", "phone": "13800000000"}, 1))
    assert result.status_code == 200 and result.local_id == "shunfeng:SF1"
    [request] = seen
    assert str(request.url) == "https://poll.kuaidi100.com/poll"
    sent = form(request.content)
    assert sent["schema"] == "json" and " " not in sent["param"]
    assert json.loads(sent["param"]) == {
        "company": "shunfeng", "number": "SF1", "key": KEY,
        "parameters": {"callbackurl": "https://hub.example.com/webhooks/courier", "salt": SALT, "resultv2": "1",
                       "phone": "13800000000"}}


# ---- the push -----------------------------------------------------------------------------------------------


def push(param: str = PARAM, sign: str | None = None, **extra: str) -> tuple[dict[str, str], bytes]:
    fields = {"param": param, "sign": md5_upper(param + SALT) if sign is None else sign, **extra}
    return {"Content-Type": "application/x-www-form-urlencoded"}, urlencode(fields).encode()


def test_the_push_sign_is_upper_case_md5_of_param_and_salt() -> None:
    assert push_sign(PARAM, SALT) == hashlib.md5((PARAM + SALT).encode("utf-8")).hexdigest().upper()
    assert form(push_body(PARAM, SALT)) == {"param": PARAM, "sign": md5_upper(PARAM + SALT)}
    assert form(push_body(PARAM, None)) == {"param": PARAM}  # subscribed without a salt: unsigned


def test_a_signed_push_verifies_in_either_case_and_is_named_by_its_param() -> None:
    """The sign is compared case-insensitively; the event id is the same for the same param (a re-push is a
    duplicate) and differs for another one."""
    headers, body = push()
    found = KUAIDI100_SCHEME.verify([SALT], headers, body, time.time())
    assert found == "k100-" + hashlib.md5(PARAM.encode()).hexdigest() == event_id(PARAM)
    _, lower = push(sign=md5_upper(PARAM + SALT).lower())
    assert KUAIDI100_SCHEME.verify([SALT], headers, lower, 0.0) == found  # no timestamp: any clock
    other = PARAM.replace("polling", "shutdown")
    assert KUAIDI100_SCHEME.verify([SALT], headers, push(other)[1], 0.0) != found


def test_every_active_salt_verifies_during_a_rotation() -> None:
    headers, body = push()
    assert KUAIDI100_SCHEME.verify(["new-salt", SALT], headers, body, 0.0).startswith("k100-")


@pytest.mark.parametrize(("body", "words"), [
    (push(sign=md5_upper(PARAM + "forged-salt"))[1], "matches none of the 1 active salt(s)"),
    (push(sign=md5_upper(PARAM.replace("SF1", "SF2") + SALT))[1], "matches none"),  # signed over another param
    (urlencode({"param": PARAM}).encode(), "missing form field sign"),
    (urlencode({"param": PARAM, "sign": " "}).encode(), "missing form field sign"),
    (urlencode({"sign": md5_upper(PARAM + SALT)}).encode(), "missing form field param"),
    (json.dumps({"param": PARAM}).encode(), "not a UTF-8 form"),
    (push()[1] + b"&sign=" + md5_upper(PARAM + SALT).encode(), "not a UTF-8 form"),  # two signs: which one?
    (b"param=%FF&sign=AB", "not a UTF-8 form"),
])
def test_a_forged_or_unsigned_push_is_refused_without_showing_a_secret(body: bytes, words: str) -> None:
    with pytest.raises(SignatureError) as refused:
        KUAIDI100_SCHEME.verify([SALT], {"content-type": "application/x-www-form-urlencoded"}, body, 0.0)
    assert words in str(refused.value)
    assert SALT not in str(refused.value) and md5_upper(PARAM + SALT) not in str(refused.value)


def test_no_salt_means_nothing_verifies_and_an_empty_salt_is_no_key() -> None:
    with pytest.raises(SignatureError, match="no webhook secret"):
        KUAIDI100_SCHEME.verify([], *push(), 0.0)
    with pytest.raises(ValueError, match="must not be empty"):
        salt_key("")


# ---- the body and the answer --------------------------------------------------------------------------------


def test_a_push_decodes_to_its_param() -> None:
    _, body = push()
    assert KUAIDI100_INBOUND.decode({"content-type": "application/x-www-form-urlencoded;charset=UTF-8"}, body) == \
        json.loads(PARAM)


@pytest.mark.parametrize(("content_type", "body", "error", "words"), [
    ("application/json", push()[1], UnsupportedBody, "Content-Type is `application/json`"),
    (None, push()[1], UnsupportedBody, "Content-Type is missing"),
    ("application/x-www-form-urlencoded; charset=gbk", push()[1], UnsupportedBody, "charset `gbk`"),
    ("application/x-www-form-urlencoded", urlencode({"sign": "AB"}).encode(), InvalidValue, "param is missing"),
    ("application/x-www-form-urlencoded", push("{not json")[1], InvalidValue, "param is not JSON"),
    ("application/x-www-form-urlencoded", push("[1, 2]")[1], InvalidValue, "must be a JSON object"),
    ("application/x-www-form-urlencoded", push('{"a": NaN}')[1], InvalidValue, "NaN is not a JSON number"),
    ("application/x-www-form-urlencoded", push("[" * 100_000 + "]" * 100_000)[1], InvalidValue, "nests too deep"),
])
def test_a_body_that_is_not_a_push_says_what_is_wrong(content_type: str | None, body: bytes, error: type[Exception],
                                                     words: str) -> None:
    headers = {"content-type": content_type} if content_type else {}
    with pytest.raises(error, match=words.replace("[", r"\[").replace("(", r"\(")):
        KUAIDI100_INBOUND.decode(headers, body)


def test_the_answer_is_kuaidi100s_acknowledgement_or_its_shape_of_a_refusal() -> None:
    """Stored, new or again: HTTP 200 and exactly what Kuaidi100 waits for. Refused: the hub's status."""
    ack = {"result": True, "returnCode": "200", "message": "成功"}
    assert KUAIDI100_INBOUND.reply(202, "courier:k100-1", False, "stored") == (200, ack)
    assert KUAIDI100_INBOUND.reply(202, "courier:k100-1", True, "already stored") == (200, ack)
    status, body = KUAIDI100_INBOUND.reply(401, None, False, "signature check failed: missing form field sign")
    assert status == 401
    assert body == {"result": False, "returnCode": "401", "message": "signature check failed: missing form field sign"}
