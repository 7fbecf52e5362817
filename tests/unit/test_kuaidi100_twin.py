"""The Kuaidi100 twin itself: the vendor's checks and error answers, scripted journeys pushed as signed form
posts, faults and rate limits on demand, and the same API served over a real loopback socket."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from urllib.parse import parse_qs

import httpx
import pytest

from connectors.kuaidi100.connector import Kuaidi100Connector
from connectors.kuaidi100.twin import Kuaidi100Twin, TwinError
from hub.core.ports import RecordNotFound, TransientReadError, WriteRequest
from tests.serving import served

KEY, CUSTOMER, SALT = "twin-key", "TWINCUSTOMER", "twin-salt"
CALLBACK = "http://hub.test/webhooks/courier"


@pytest.fixture
def received() -> list[httpx.Request]:
    return []


@pytest.fixture
def twin(received: list[httpx.Request]) -> Iterator[Kuaidi100Twin]:
    def hub(request: httpx.Request) -> httpx.Response:
        received.append(request)
        return httpx.Response(200, json={"result": True, "returnCode": "200", "message": "成功"})

    made = Kuaidi100Twin(KEY, CUSTOMER, push_client=httpx.Client(transport=httpx.MockTransport(hub)))
    yield made
    made.close()


def k100(twin: Kuaidi100Twin, key: str = KEY, base_url: str | None = None) -> Kuaidi100Connector:
    client = httpx.Client(transport=twin.transport()) if base_url is None else httpx.Client()
    return Kuaidi100Connector("courier", base_url or twin.base_url, key, CUSTOMER, SALT, CALLBACK, client)


def subscribe(connector: Kuaidi100Connector, com: str, num: str) -> None:
    result = connector.create(WriteRequest(1, "20261204-SVC-00001", "courier", None, {"num": num, "com": com}, 1))
    assert result.status_code == 200, result.error


def post(twin: Kuaidi100Twin, path: str, **fields: str) -> dict[str, object]:
    with httpx.Client(transport=twin.transport()) as client:
        answer = client.post(twin.base_url + path, data=fields)
    assert answer.status_code == 200
    body = answer.json()
    assert isinstance(body, dict)
    return body


def test_a_journey_is_pushed_step_by_step_as_signed_forms(twin: Kuaidi100Twin, received: list[httpx.Request]) -> None:
    twin.script("shunfeng", "SF1", [("1", "已揽收"), ("0", "运输中"), ("5", "派件中"), ("3", "已签收")])
    subscribe(k100(twin), "shunfeng", "SF1")
    for _ in range(4):
        push = twin.advance("shunfeng", "SF1")
        assert push is not None and push.acknowledged
    assert [r.url for r in received] == [httpx.URL(CALLBACK)] * 4
    last = received[-1]
    assert last.headers["content-type"].startswith("application/x-www-form-urlencoded")
    form = {name: values[0] for name, values in parse_qs(last.content.decode()).items()}
    assert form["sign"] == hashlib.md5((form["param"] + SALT).encode()).hexdigest().upper()
    param = json.loads(form["param"])
    assert param["status"] == "shutdown" and param["lastResult"]["ischeck"] == "1"
    assert [c["context"] for c in param["lastResult"]["data"]] == ["已签收", "派件中", "运输中", "已揽收"]
    with pytest.raises(TwinError, match="journey of shunfeng SF1 is over"):
        twin.advance("shunfeng", "SF1")
    assert twin.push("shunfeng", "SF1") is None  # shut down once signed


def test_checkpoints_keep_moving_forward_even_within_one_second(twin: Kuaidi100Twin) -> None:
    twin.script("ems", "E1", [("1", "a"), ("0", "b"), ("0", "c")])
    for _ in range(3):
        twin.advance("ems", "E1")
    times = [c.at for c in twin.parcels[("ems", "E1")].checkpoints]
    assert times == sorted(set(times))


def test_an_unsubscribed_parcel_is_not_pushed_and_a_repush_is_byte_for_byte(twin: Kuaidi100Twin,
                                                                            received: list[httpx.Request]) -> None:
    twin.script("jd", "JD1", [("1", "已揽收"), ("0", "运输中")])
    assert twin.advance("jd", "JD1") is None
    subscribe(k100(twin), "jd", "JD1")
    first = twin.advance("jd", "JD1")
    again = twin.repush()
    assert first is not None and again.body == first.body and len(received) == 2


def test_a_forged_push_is_signed_with_another_salt_or_not_at_all(twin: Kuaidi100Twin) -> None:
    twin.script("jd", "JD1", [("1", "已揽收")])
    subscribe(k100(twin), "jd", "JD1")
    twin.advance("jd", "JD1")
    forged = twin.forged_push("jd", "JD1")
    form = {name: values[0] for name, values in parse_qs(forged.body.decode()).items()}
    assert form["sign"] != hashlib.md5((form["param"] + SALT).encode()).hexdigest().upper()
    unsigned = twin.forged_push("jd", "JD1", signed=False)
    assert "sign" not in parse_qs(unsigned.body.decode())


@pytest.mark.parametrize(("fields", "code"), [
    ({"customer": CUSTOMER, "param": '{"com":"shunfeng","num":"SF1"}', "sign": "0" * 32}, "503"),
    ({"customer": "SOMEONE-ELSE", "param": '{"com":"shunfeng","num":"SF1"}', "sign": "0" * 32}, "400"),
    ({"customer": CUSTOMER, "param": '{"com":"shunfeng","num":"SF1"}'}, "400"),
])
def test_a_query_is_checked_like_the_vendors(twin: Kuaidi100Twin, fields: dict[str, str], code: str) -> None:
    assert post(twin, "/poll/query.do", **fields)["returnCode"] == code


@pytest.mark.parametrize(("param", "code"), [
    ({"company": "shunfeng", "number": "SF1", "key": "wrong", "parameters": {"callbackurl": CALLBACK}}, "600"),
    ({"company": "nosuch", "number": "SF1", "key": KEY, "parameters": {"callbackurl": CALLBACK}}, "700"),
    ({"company": "shunfeng", "number": "SF1", "key": KEY, "parameters": {"callbackurl": "ftp://x"}}, "700"),
    ({"company": "shunfeng", "number": "S" * 33, "key": KEY, "parameters": {"callbackurl": CALLBACK}}, "700"),
])
def test_a_subscription_is_checked_like_the_vendors(twin: Kuaidi100Twin, param: dict[str, object], code: str) -> None:
    assert post(twin, "/poll", schema="json", param=json.dumps(param))["returnCode"] == code


def test_subscribing_twice_is_501_and_an_expired_key_is_601(twin: Kuaidi100Twin) -> None:
    param = json.dumps({"company": "ems", "number": "E1", "key": KEY, "parameters": {"callbackurl": CALLBACK}})
    assert post(twin, "/poll", schema="json", param=param)["returnCode"] == "200"
    assert post(twin, "/poll", schema="json", param=param)["returnCode"] == "501"
    twin.key_expired = True
    assert post(twin, "/poll", schema="json", param=param)["returnCode"] == "601"


def test_failures_and_rate_limits_come_on_demand(twin: Kuaidi100Twin) -> None:
    twin.script("shunfeng", "SF1", [("1", "已揽收")])
    twin.advance("shunfeng", "SF1")
    connector = k100(twin)
    twin.rate_limit(1, retry_after=30)
    with pytest.raises(TransientReadError) as limited:
        connector.read("shunfeng:SF1")
    assert limited.value.retry_after == 30
    twin.fail_next(1, "500")
    with pytest.raises(RecordNotFound):
        connector.read("shunfeng:SF1")
    twin.fail_next(1, http_status=503)
    with pytest.raises(TransientReadError, match="HTTP 503"):
        connector.read("shunfeng:SF1")
    assert connector.read("shunfeng:SF1")[0].fields["state"] == "1"


def test_the_twin_serves_the_same_api_on_a_loopback_port(twin: Kuaidi100Twin) -> None:
    """Served by uvicorn, a real socket: the connector reads and subscribes just as in process."""
    twin.script("yuantong", "YT1", [("1002", "干线运输")])
    twin.advance("yuantong", "YT1")
    with served(twin.app) as url:
        connector = k100(twin, base_url=url)
        assert connector.read("yuantong:YT1")[0].fields["state"] == "0"
        subscribe(connector, "yuantong", "YT1")
        with pytest.raises(RecordNotFound):
            connector.read("yuantong:NOSUCH")
        assert httpx.get(url + "/poll").status_code == 404
