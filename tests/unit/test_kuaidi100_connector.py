"""The Kuaidi100 connector's answers to each documented return code (reads raise, writes report), what it
subscribes when only one field changed, how the type is built and configured, and that no secret leaks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from connectors.kuaidi100.connector import Kuaidi100Connector
from connectors.kuaidi100.plugin import CONNECTOR_TYPE, Kuaidi100Options, build
from hub.config import SystemSettings, check_system
from hub.core.errors import UnknownSystem
from hub.core.plugin import SystemSetup
from hub.core.ports import (
    BulkReadUnavailable,
    ConnectorError,
    RecordNotFound,
    TransientReadError,
    WriteRequest,
    WriteResult,
)
from hub.core.retry import classify

KEY, CUSTOMER, SALT = "secret-key-k100", "SECRETCUSTOMER0123", "secret-salt-k100"
SECRETS = (KEY, CUSTOMER, SALT)
Handler = Callable[[httpx.Request], httpx.Response]


def connector(handler: Handler) -> Kuaidi100Connector:
    client = httpx.Client(transport=httpx.MockTransport(handler))
    return Kuaidi100Connector("courier", "https://poll.kuaidi100.com/", KEY, CUSTOMER, SALT,
                              "https://hub.example.com/webhooks/courier", client,
                              customer_env="TICKETHUB_KUAIDI100_CUSTOMER")


def answering(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Handler:
    return lambda _request: httpx.Response(status, json=body, headers=headers)


def refusal(code: str, message: str = "") -> dict[str, Any]:
    return {"result": False, "returnCode": code, "message": message}


def raising(error: Exception) -> Handler:
    def handle(_request: httpx.Request) -> httpx.Response:
        raise error
    return handle


def request(local_id: str | None = None, **fields: Any) -> WriteRequest:
    return WriteRequest(7, "20261204-SVC-00001", "courier", local_id, fields, 1)


# ---- reads --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("handler", "error", "words"), [
    (answering(refusal("500", "查询无结果，请隔段时间再查")), RecordNotFound, "no tracking for shunfeng SF1 (500"),
    (answering(refusal("503", "验证签名失败")), ConnectorError, "check that the key in credentials_env and the "
                                                            "customer id in $TICKETHUB_KUAIDI100_CUSTOMER"),
    (answering(refusal("601", "POLL:KEY已过期")), ConnectorError, "the key has expired"),
    (answering(refusal("400", "找不到对应公司")), ConnectorError, "check the company code"),
    (answering(refusal("408")), ConnectorError, "408: the phone number check failed"),
    (answering(refusal("501")), TransientReadError, "could not answer the query for shunfeng SF1 now (501"),
    (answering(refusal("502", "服务器繁忙")), TransientReadError, "(502: 服务器繁忙)"),
    (answering({"message": "error"}, 503), TransientReadError, "HTTP 503"),
    (answering({}, 429), TransientReadError, "HTTP 429"),
    (answering({}, 403), ConnectorError, "HTTP 403"),
    (lambda _r: httpx.Response(200, text="<html>"), ConnectorError, "something not JSON"),
    (answering(["not", "an", "object"]), ConnectorError, "with a list"),
    (answering({"message": "ok", "com": "shunfeng", "nu": "SF1", "state": "0", "data": [{"context": "?"}]}),
     ConnectorError, "a track the hub cannot read"),
    (answering({"message": "ok", "com": "shunfeng", "nu": "SF1", "state": "0", "data": []}), RecordNotFound,
     "no checkpoint for shunfeng SF1 yet"),
    (raising(httpx.ReadTimeout("slow")), TransientReadError, "did not answer the query for shunfeng SF1: ReadTimeout"),
])
def test_a_query_that_fails_raises_what_the_hub_acts_on(handler: Handler, error: type[Exception], words: str) -> None:
    with pytest.raises(error) as raised:
        connector(handler).read("shunfeng:SF1")
    assert type(raised.value) is error and words in str(raised.value)
    assert not any(secret in str(raised.value) for secret in SECRETS)


def test_a_rate_limited_query_carries_the_retry_after() -> None:
    with pytest.raises(TransientReadError) as raised:
        connector(answering(refusal("502"), headers={"Retry-After": "30"})).read("shunfeng:SF1")
    assert raised.value.retry_after == 30


@pytest.mark.parametrize("local_id", ["SF1", "shunfeng:", ":SF1", ""])
def test_a_local_id_that_names_no_parcel_is_not_found_without_asking(local_id: str) -> None:
    with pytest.raises(RecordNotFound, match="not a Kuaidi100 parcel"):
        connector(raising(AssertionError("no request expected"))).read(local_id)


def test_there_is_no_bulk_read() -> None:
    with pytest.raises(BulkReadUnavailable, match="no bulk export"):
        next(iter(connector(raising(AssertionError("no request"))).read_all()))


def test_a_vendor_message_that_echoes_a_secret_is_scrubbed() -> None:
    with pytest.raises(ConnectorError) as raised:
        connector(answering(refusal("400", f"bad customer {CUSTOMER} for key {KEY}"))).read("shunfeng:SF1")
    assert "bad customer *** for key ***" in str(raised.value)


# ---- writes: subscriptions ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("handler", "status", "verdict", "words"), [
    (answering({"result": True, "returnCode": "200", "message": "提交成功"}), 200, "delivered", None),
    (answering(refusal("501", "重复订阅")), 200, "delivered", None),
    (answering(refusal("500", "服务器错误")), 503, "retry", "server error (500: 服务器错误)"),
    (answering(refusal("502")), 429, "retry", "busy (502: server busy"),
    (answering(refusal("600", "您不是合法的订阅者")), 401, "dead", "check the key in the variable credentials_env"),
    (answering(refusal("601")), 401, "dead", "the key has expired"),
    (answering(refusal("700")), 422, "dead", "check the company code `shunfeng`"),
    (answering(refusal("701")), 422, "dead", "does not track company `shunfeng`"),
    (answering(refusal("702")), 422, "dead", "cannot tell the company"),
    (answering(refusal("999", "?")), 422, "dead", "(999: ?)"),
    (answering({"error": "x"}, 500), 500, "retry", "HTTP 500"),
    (answering({"error": "x"}, 404), 404, "dead", "HTTP 404"),
    (lambda _r: httpx.Response(200, text="busy"), 502, "retry", "not a JSON object"),
    (raising(httpx.ConnectTimeout("slow")), None, "retry", "timed out: ConnectTimeout"),
    (raising(httpx.ConnectError("refused")), None, "retry", "no answer: ConnectError"),
])
def test_a_subscription_reports_each_answer_as_a_write_result(handler: Handler, status: int | None, verdict: str,
                                                              words: str | None) -> None:
    result = connector(handler).create(request(num="SF1", com="shunfeng"))
    assert result.status_code == status and classify(result.status_code, result.permanent) == verdict
    if verdict == "delivered":
        assert result.local_id == "shunfeng:SF1" and result.error is None
    else:
        assert result.error and words in result.error and result.local_id is None
        assert not any(secret in result.error for secret in SECRETS)


def test_a_busy_answer_carries_its_retry_after() -> None:
    result = connector(answering(refusal("502"), headers={"Retry-After": "120"})).write(request(num="SF1", com="jd"))
    assert (result.status_code, result.retry_after) == (429, 120)


def test_a_write_with_only_one_field_takes_the_other_from_the_parcel() -> None:
    """A new waybill on a parcel the hub knows keeps its company, and a new company keeps its waybill."""
    sent: list[str] = []

    def handle(r: httpx.Request) -> httpx.Response:
        sent.append(r.content.decode())
        return httpx.Response(200, json={"result": True, "returnCode": "200", "message": "提交成功"})

    k100 = connector(handle)
    assert k100.write(request("shunfeng:SF1", num="SF2")).local_id == "shunfeng:SF2"
    assert k100.write(request("shunfeng:SF1", com="jd")).local_id == "jd:SF1"
    assert "%22company%22%3A%22shunfeng%22" in sent[0] and "%22number%22%3A%22SF1%22" in sent[1]


@pytest.mark.parametrize(("local_id", "fields", "words"), [
    (None, {"num": "SF1"}, "the WMS must set shipment.carrier"),
    (None, {"num": "SF1", "com": "  "}, "the WMS must set shipment.carrier"),
    (None, {"com": "shunfeng"}, "the WMS must set shipment.waybill"),
    (None, {"num": "SF" + "1" * 40, "com": "shunfeng"}, "longer than Kuaidi100's 32 characters"),
])
def test_a_parcel_that_cannot_be_subscribed_is_refused_before_sending(local_id: str | None, fields: dict[str, Any],
                                                                      words: str) -> None:
    result = connector(raising(AssertionError("nothing may be sent"))).write(request(local_id, **fields))
    assert result.permanent and result.error and words in result.error
    assert classify(result.status_code, result.permanent) == "dead"


def test_the_connector_does_not_show_its_secrets() -> None:
    k100 = connector(answering({}))
    assert not any(secret in repr(k100) for secret in SECRETS)


# ---- the type -----------------------------------------------------------------------------------------------


def setup(monkeypatch: pytest.MonkeyPatch, *, credential: str | None = KEY, customer: str | None = CUSTOMER,
          salts: tuple[str, ...] = (SALT,)) -> SystemSetup:
    if customer is None:
        monkeypatch.delenv("TEST_K100_CUSTOMER", raising=False)
    else:
        monkeypatch.setenv("TEST_K100_CUSTOMER", customer)
    options = Kuaidi100Options(customer_env="TEST_K100_CUSTOMER", callback_url="https://hub.example.com/webhooks/courier")
    return SystemSetup("courier", "https://poll.kuaidi100.com", options, None, credential, salts, httpx.Client())


def test_build_makes_a_connector_with_the_first_salt(monkeypatch: pytest.MonkeyPatch) -> None:
    built = build(setup(monkeypatch, salts=(SALT, "older-salt")))
    assert isinstance(built, Kuaidi100Connector) and built.callback_url.endswith("/webhooks/courier")


@pytest.mark.parametrize(("change", "words"), [
    ({"credential": None}, "set credentials_env in [systems.courier]"),
    ({"customer": None}, "set the variable $TEST_K100_CUSTOMER that customer_env in [systems.courier] names"),
    ({"customer": "  "}, "$TEST_K100_CUSTOMER"),
    ({"salts": ()}, "set webhook_secrets_env in [systems.courier]"),
])
def test_build_refuses_a_system_without_its_secrets_naming_what_to_set(monkeypatch: pytest.MonkeyPatch,
                                                                        change: dict[str, Any], words: str) -> None:
    with pytest.raises(UnknownSystem) as refused:
        build(setup(monkeypatch, **change))
    assert words in str(refused.value) and not any(secret in str(refused.value) for secret in SECRETS)


def test_the_type_declares_its_keys_and_checks_them() -> None:
    good = SystemSettings(type="kuaidi100", base_url="https://poll.kuaidi100.com", credentials_env="K100_KEY",
                          webhook_secrets_env="K100_SALTS", customer_env="K100_CUSTOMER",
                          callback_url="https://hub.example.com/webhooks/courier")
    assert check_system("tickethub.toml", "courier", good) == []
    bad = SystemSettings(type="kuaidi100", customer_env="the id itself 0A1B", callback_url="hub/webhooks/courier",
                         colour="red")
    problems = {p.key: p.message for p in check_system("tickethub.toml", "courier", bad)}
    assert "base_url, credentials_env, webhook_secrets_env" in problems["systems.courier"]
    assert "not an environment variable name" in problems["systems.courier.customer_env"]
    assert "0A1B" not in problems["systems.courier.customer_env"]  # what may be the id itself is not repeated
    assert "callback_url must be the hub's public http(s) URL" in problems["systems.courier.callback_url"]
    assert "systems.courier.colour" in problems
    assert CONNECTOR_TYPE.notices_carry_records and CONNECTOR_TYPE.inbound is not None


def test_no_subscription_result_carries_a_secret_even_when_the_vendor_echoes_it() -> None:
    """Whatever the subscription answers, no result carries a secret (a sweep over every return code)."""
    results: list[WriteResult] = []
    for code in ("200", "500", "501", "502", "600", "601", "700", "701", "702"):
        results.append(connector(answering(refusal(code, f"echo {KEY} {SALT}"))).create(request(num="SF1", com="ems")))
    assert not any(secret in (r.error or "") for r in results for secret in SECRETS)
