"""Kuaidi100's sandbox twin: the real-time query, subscriptions and signed pushes, in memory. For tests,
benches and the demo, never production code.

    twin = Kuaidi100Twin("the-key", "THE-CUSTOMER", push_client=TestClient(hub_app))  # pushes go through it
    twin.script("shunfeng", "SF1", [("1", "已揽收"), ("0", "运输中"), ("5", "派件中"), ("3", "已签收")])
    connector = Kuaidi100Connector(..., client=httpx.Client(transport=twin.transport()))
    connector.create(...)             # POST /poll: the twin keeps the subscription (callbackurl, salt)
    twin.advance("shunfeng", "SF1")   # one step of the journey; a signed form post to the callbackurl
    twin.fail_next(2, "500"); twin.rate_limit(1, retry_after=30); twin.forged_push("shunfeng", "SF1")

`transport()` serves it in process (httpx.MockTransport); `app` is the same API as ASGI, for uvicorn on a
loopback port (tests/serving.py `served(twin.app)`). Both answer in Kuaidi100's way: HTTP 200 with a JSON
track, or `{"result": false, "returnCode", "message"}` (see `connectors/kuaidi100/wire.py` for sources). A
request is checked in this order: an injected fault, the form, the credentials (query: customer, then the
signature, 503; subscription: the key, 600), an expired key (601), the data (400 / 700), then the answer.

Not emulated: the 30-minute lock on a waybill queried too often, the phone check some couriers need (408),
autoCom / interCom, the monthly limit of four subscriptions per parcel, and Kuaidi100's own push retries
(a push the hub did not acknowledge is recorded; `repush` sends it again on demand).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from connectors.kuaidi100.push import push_body
from connectors.kuaidi100.wire import (
    FINAL_STATES,
    FORM_TYPE,
    MAX_NUMBER_LENGTH,
    QUERY_PATH,
    SUBSCRIBE_PATH,
    compact_json,
    format_vendor_time,
    main_state,
    parse_form,
    query_sign,
    single,
    state_name,
)

COMPANIES = frozenset({"shunfeng", "zhongtong", "yuantong", "yunda", "jd", "ems", "shentong", "debangwuliu", "dhl",
                       "jtexpress", "youzhengguonei", "huitongkuaidi", "zhaijisong"})
MESSAGES = {  # the answers' `message`, as the vendor's documentation quotes them
    "400": "找不到对应公司",
    "500": "查询无结果，请隔段时间再查",
    "501": "服务器错误",
    "502": "服务器繁忙",
    "503": "验证签名失败",
    "600": "您不是合法的订阅者",
    "601": "POLL:KEY已过期",
    "700": "订阅方的订阅数据存在错误",
    "701": "拒绝订阅的快递公司",
    "702": "POLL:识别不到该单号对应的快递公司",
}
Answer = tuple[int, dict[str, str], Any]  # HTTP status, extra headers, JSON body


class TwinError(Exception):
    """The test asked the twin for something it cannot do (an unknown parcel, a finished journey)."""


@dataclass
class Checkpoint:
    state: str  # as scripted: a main state or a sub-state (e.g. 301)
    context: str
    at: datetime


@dataclass
class Parcel:
    com: str
    num: str
    steps: list[tuple[str, str]] = field(default_factory=list)  # still to come
    checkpoints: list[Checkpoint] = field(default_factory=list)  # so far, oldest first


@dataclass
class Subscription:
    callbackurl: str
    salt: str | None
    resultv2: str
    phone: str | None
    active: bool = True  # polling; false once Kuaidi100 shut it down (the parcel's final state)


@dataclass
class Push:
    url: str
    body: bytes
    param: str
    status_code: int | None  # the receiver's HTTP status, None if it did not answer
    answer: Any  # its JSON, or its text

    @property
    def acknowledged(self) -> bool:
        """The receiver answered as Kuaidi100 requires, so Kuaidi100 would not push it again."""
        return (self.status_code == 200 and isinstance(self.answer, dict) and self.answer.get("result") is True
                and str(self.answer.get("returnCode")) == "200")


@dataclass
class _Fault:
    code: str
    http_status: int = 200
    retry_after: float | None = None


class Kuaidi100Twin:
    """One Kuaidi100 enterprise account (its key and customer id) and the parcels it tracks."""

    base_url = "http://kuaidi100.twin"

    def __init__(self, key: str, customer: str, *, push_client: httpx.Client | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 companies: frozenset[str] = COMPANIES):
        self.key, self.customer, self.clock, self.companies = key, customer, clock, companies
        self._push_client, self._owns_client = push_client, push_client is None
        self.parcels: dict[tuple[str, str], Parcel] = {}
        self.subscriptions: dict[tuple[str, str], Subscription] = {}
        self.pushes: list[Push] = []
        self.requests: list[tuple[str, dict[str, list[str]]]] = []  # (path, form) of every API request
        self.key_expired = False
        self._faults: list[_Fault] = []
        self._lock = threading.RLock()
        self.app = _Asgi(self)  # the same API as ASGI: serve it with uvicorn (tests/serving.py `served`)

    # ---- the test's hands -----------------------------------------------------------------------------

    def script(self, com: str, num: str, steps: Sequence[tuple[str, str]]) -> Parcel:
        """The journey a parcel will make: (state code, checkpoint text) per step, in order."""
        with self._lock:
            parcel = self.parcels.setdefault((com, num), Parcel(com, num))
            parcel.steps.extend((str(state), context) for state, context in steps)
            return parcel

    def advance(self, com: str, num: str) -> Push | None:
        """The parcel moves one step (a checkpoint stamped at the twin's clock, always after the last one);
        a subscribed parcel is pushed to its callbackurl. The push, or None when nobody subscribed."""
        with self._lock:
            parcel = self._parcel(com, num)
            if not parcel.steps:
                raise TwinError(f"the journey of {com} {num} is over; script more steps")
            state, context = parcel.steps.pop(0)
            at = self.clock().replace(microsecond=0)
            if parcel.checkpoints and at <= parcel.checkpoints[-1].at:
                at = parcel.checkpoints[-1].at + timedelta(seconds=1)
            parcel.checkpoints.append(Checkpoint(state, context, at))
        return self.push(com, num)

    def push(self, com: str, num: str) -> Push | None:
        """Push the parcel's whole track to its subscription's callbackurl, signed with its salt."""
        with self._lock:
            subscription = self.subscriptions.get((com, num))
            if subscription is None or not subscription.active or not self._parcel(com, num).checkpoints:
                return None
            param = self.push_param(com, num)
            if param["lastResult"]["ischeck"] == "1":
                subscription.active = False  # Kuaidi100 stops tracking a signed parcel: status shutdown
            text = compact_json(param)
            body = push_body(text, subscription.salt)
        return self._send(subscription.callbackurl, body, text)

    def repush(self) -> Push:
        """Send the last push again, byte for byte (as Kuaidi100 does when it got no acknowledgement)."""
        if not self.pushes:
            raise TwinError("nothing was pushed yet")
        last = self.pushes[-1]
        return self._send(last.url, last.body, last.param)

    def forged_push(self, com: str, num: str, *, salt: str = "not-the-salt", signed: bool = True,
                    url: str | None = None) -> Push:
        """A push of the parcel's track signed with a salt the hub does not hold (or unsigned), to the
        subscription's callbackurl (or `url`): what someone pretending to be Kuaidi100 would send."""
        with self._lock:
            if url is None:
                subscription = self.subscriptions.get((com, num))
                if subscription is None:
                    raise TwinError(f"nobody subscribed {com} {num}: give the url to push to")
                url = subscription.callbackurl
            text = compact_json(self.push_param(com, num))
        return self._send(url, push_body(text, salt if signed else None), text)

    def push_param(self, com: str, num: str) -> dict[str, Any]:
        """The JSON of a push's `param` for the parcel as it stands."""
        with self._lock:
            subscription = self.subscriptions.get((com, num))
            track = self._track(self._parcel(com, num), subscription.resultv2 if subscription else "1")
            final = track["ischeck"] == "1"
            return {"status": "shutdown" if final else "polling", "billstatus": "check" if final else "got",
                    "message": "", "autoCheck": "0", "comOld": "", "comNew": "", "lastResult": track}

    def fail_next(self, times: int, code: str = "500", *, http_status: int = 200,
                  retry_after: float | None = None) -> None:
        """The next `times` API requests (query or subscription) answer with Kuaidi100's error `code` (in the
        body, HTTP 200), or with `http_status` when it is not 200 (a gateway's error)."""
        with self._lock:
            self._faults.extend(_Fault(code, http_status, retry_after) for _ in range(times))

    def rate_limit(self, times: int = 1, retry_after: float | None = None) -> None:
        """The next `times` API requests are refused as too many (502), with a Retry-After when given."""
        self.fail_next(times, "502", retry_after=retry_after)

    def close(self) -> None:
        if self._owns_client and self._push_client is not None:
            self._push_client.close()

    # ---- HTTP -----------------------------------------------------------------------------------------

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        status, headers, content = self.respond(request.method, request.url.path, request.content)
        return httpx.Response(status, headers=headers, json=content)

    def respond(self, method: str, path: str, body: bytes) -> Answer:
        if method != "POST" or path not in (QUERY_PATH, SUBSCRIBE_PATH):
            return 404, {}, {"result": False, "returnCode": "404", "message": f"the twin has no {method} {path}"}
        try:
            form = parse_form(body)
        except ValueError:
            form = {}
        with self._lock:
            self.requests.append((path, form))
            if self._faults:
                fault = self._faults.pop(0)
                headers = {"retry-after": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}
                return fault.http_status, headers, _refusal(fault.code)
            return self._query(form) if path == QUERY_PATH else self._subscribe(form)

    def _query(self, form: dict[str, list[str]]) -> Answer:
        try:
            customer, sign, param = single(form, "customer"), single(form, "sign"), single(form, "param")
        except ValueError:
            return 200, {}, _refusal("400")
        if not customer or not sign or param is None or customer != self.customer:
            return 200, {}, _refusal("400")  # incomplete, or a customer id it does not know
        if query_sign(param, self.key, self.customer) != sign.strip().upper():
            return 200, {}, _refusal("503")
        if self.key_expired:
            return 200, {}, _refusal("601")
        asked = _json_object(param)
        com, num = asked.get("com"), asked.get("num")
        if not isinstance(com, str) or not isinstance(num, str) or com not in self.companies:
            return 200, {}, _refusal("400")
        parcel = self.parcels.get((com, num))
        if parcel is None or not parcel.checkpoints:
            return 200, {}, _refusal("500")
        return 200, {}, self._track(parcel, str(asked.get("resultv2") or "0"))

    def _subscribe(self, form: dict[str, list[str]]) -> Answer:
        try:
            schema, param = single(form, "schema"), single(form, "param")
        except ValueError:
            return 200, {}, _refusal("700")
        asked = _json_object(param or "")
        if schema != "json" or not asked:
            return 200, {}, _refusal("700")
        if asked.get("key") != self.key:
            return 200, {}, _refusal("600")
        if self.key_expired:
            return 200, {}, _refusal("601")
        com, num, parameters = asked.get("company"), asked.get("number"), asked.get("parameters")
        if (not isinstance(com, str) or com not in self.companies or not isinstance(num, str) or not num
                or len(num) > MAX_NUMBER_LENGTH or not isinstance(parameters, dict)
                or not str(parameters.get("callbackurl") or "").startswith(("http://", "https://"))):
            return 200, {}, _refusal("700")
        existing = self.subscriptions.get((com, num))
        if existing is not None and existing.active:
            return 200, {}, _refusal("501")
        salt = parameters.get("salt")
        self.subscriptions[(com, num)] = Subscription(
            str(parameters["callbackurl"]), salt if isinstance(salt, str) else None,
            str(parameters.get("resultv2") or "0"), parameters.get("phone"))
        self.parcels.setdefault((com, num), Parcel(com, num))
        return 200, {}, {"result": True, "returnCode": "200", "message": "提交成功"}

    def _track(self, parcel: Parcel, resultv2: str) -> dict[str, Any]:
        newest = parcel.checkpoints[-1]
        data = []
        for checkpoint in reversed(parcel.checkpoints):  # newest first
            when = format_vendor_time(checkpoint.at)
            item: dict[str, Any] = {"time": when, "ftime": when, "context": checkpoint.context}
            if resultv2 != "0":
                item.update(status=state_name(checkpoint.state), areaCode=None, areaName=None)
            if resultv2 in ("4", "6"):
                item["statusCode"] = checkpoint.state
            data.append(item)
        final = main_state(newest.state) in FINAL_STATES
        return {"message": "ok", "nu": parcel.num, "ischeck": "1" if final else "0", "condition": "F00",
                "com": parcel.com, "status": "200", "state": newest.state, "data": data}

    def _parcel(self, com: str, num: str) -> Parcel:
        parcel = self.parcels.get((com, num))
        if parcel is None:
            raise TwinError(f"the twin has no parcel {com} {num}; script it first")
        return parcel

    def _send(self, url: str, body: bytes, param: str) -> Push:
        if self._push_client is None:
            self._push_client = httpx.Client(timeout=10.0)
        try:
            response = self._push_client.post(url, content=body, headers={"content-type": f"{FORM_TYPE};charset=UTF-8"})
        except httpx.HTTPError:
            push = Push(url, body, param, None, None)
        else:
            try:
                answer: Any = response.json()
            except ValueError:
                answer = response.text
            push = Push(url, body, param, response.status_code, answer)
        with self._lock:
            self.pushes.append(push)
        return push


class _Asgi:
    """The twin's API as an ASGI application (for a real server on a loopback port). A class with an async
    `__call__`, so that servers tell it from an ASGI2 factory."""

    def __init__(self, twin: Kuaidi100Twin):
        self.twin = twin

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        chunks = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        status, headers, content = self.twin.respond(scope["method"], scope["path"], b"".join(chunks))
        body = json.dumps(content, ensure_ascii=False).encode("utf-8")
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json;charset=UTF-8"),
                                (b"content-length", str(len(body)).encode()),
                                *((k.encode(), v.encode()) for k, v in headers.items())]})
        await send({"type": "http.response.body", "body": body})


def _refusal(code: str) -> dict[str, Any]:
    return {"result": False, "returnCode": code, "message": MESSAGES.get(code, "error")}


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
