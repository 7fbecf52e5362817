"""Local receivers that play the alert channels' receiving ends (DingTalk, WeCom, Feishu robots and a Standard
Webhooks endpoint), checking each request as the vendor would, and recording what they accepted."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field
from typing import Any

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

DT_TOKEN, DT_SECRET = "dt0123456789abcdef", "SECdingtalk0123456789abcdef"
WC_KEY = "693a91f6-7aoc-4bc4-97a0-0ec2sifa5aaa"
FS_TOKEN, FS_SECRET = "fs-hook-0123456789abcdef", "feishu0123456789secret"
WH_SECRET = "whsec_" + base64.b64encode(b"alert webhook key, 32 bytes long").decode()
TICKET = "SVC-2026-000777"
LINK = f"https://hub.example.com/tickets/{TICKET}"
WINDOW = 3600  # DingTalk and Feishu accept a timestamp within an hour of their clock


@dataclass
class Twin:
    """The receiving ends of the four channels, on one loopback server; what each accepted is recorded."""

    rate_limited: bool = False
    seen: dict[str, list[Any]] = field(default_factory=lambda: {"dingtalk": [], "wecom": [], "feishu": [],
                                                                "webhook": []})

    async def dingtalk(self, request: Request) -> Response:
        query = request.query_params
        if query.get("access_token") != DT_TOKEN:
            return JSONResponse({"errcode": 300001, "errmsg": "token is not exist"})
        stamp, sign = query.get("timestamp", ""), query.get("sign", "")  # the query arrives URL-decoded
        digest = hmac.new(DT_SECRET.encode(), f"{stamp}\n{DT_SECRET}".encode(), hashlib.sha256).digest()
        fresh = stamp.isdigit() and abs(int(stamp) / 1000 - time.time()) < WINDOW
        if not (fresh and hmac.compare_digest(base64.b64encode(digest).decode(), sign)):
            return JSONResponse({"errcode": 310000, "errmsg": "sign not match, more: [https://ding-doc]"})
        if self.rate_limited:
            return JSONResponse({"errcode": 130101, "errmsg": "send too fast, exceed 20 times per minute"})
        body = await self._json(request)
        kind = body.get("msgtype") if isinstance(body, dict) else None
        ok = (kind == "text" and body["text"].get("content")) or (
            kind == "markdown" and body["markdown"].get("title") and body["markdown"].get("text"))
        if not ok:
            return JSONResponse({"errcode": 40035, "errmsg": "缺少参数 json"})
        self.seen["dingtalk"].append(body)
        return JSONResponse({"errcode": 0, "errmsg": "ok"})

    async def wecom(self, request: Request) -> Response:
        if request.query_params.get("key") != WC_KEY:
            return JSONResponse({"errcode": 93000, "errmsg": "invalid webhook url, hint: [1755605200], from ip: "
                                 "127.0.0.1, more info at https://open.work.weixin.qq.com/devtool/query?e=93000"})
        if self.rate_limited:
            return JSONResponse({"errcode": 45009, "errmsg": "api freq out of limit"})
        body = await self._json(request)
        kind = body.get("msgtype") if isinstance(body, dict) else None
        if kind not in ("text", "markdown") or not body[kind].get("content"):
            return JSONResponse({"errcode": 40008, "errmsg": "invalid message type"})
        self.seen["wecom"].append(body)
        return JSONResponse({"errcode": 0, "errmsg": "ok"})

    async def feishu(self, request: Request) -> Response:
        if request.path_params["token"] != FS_TOKEN:
            return JSONResponse({"code": 19001, "msg": "param invalid: incoming webhook access token invalid"})
        body = await self._json(request)
        if not isinstance(body, dict) or body.get("msg_type") not in ("text", "post", "interactive"):
            return JSONResponse({"code": 9499, "msg": "Bad Request", "data": {}})
        stamp, sign = str(body.get("timestamp", "")), str(body.get("sign", ""))
        digest = hmac.new(f"{stamp}\n{FS_SECRET}".encode(), b"", hashlib.sha256).digest()
        fresh = stamp.isdigit() and abs(int(stamp) - time.time()) < WINDOW
        if not (fresh and hmac.compare_digest(base64.b64encode(digest).decode(), sign)):
            return JSONResponse({"code": 19021, "msg": "sign match fail or timestamp is not within one hour "
                                 "from current time", "data": {}})
        if self.rate_limited:
            return JSONResponse({"code": 11232, "msg": "frequency limited", "data": {}}, status_code=400)
        self.seen["feishu"].append(body)
        return JSONResponse({"code": 0, "msg": "success", "data": {}, "StatusCode": 0, "StatusMessage": "success"})

    async def webhook(self, request: Request) -> Response:
        raw = await request.body()
        try:  # the scheme's reference library, as a receiver would use it, on the wall clock
            body = Webhook(WH_SECRET).verify(raw, dict(request.headers))
        except WebhookVerificationError as exc:
            return JSONResponse({"error": str(exc)}, status_code=401)
        self.seen["webhook"].append({"headers": dict(request.headers), "body": body})
        return Response(status_code=204)

    async def slow(self, request: Request) -> Response:
        await asyncio.sleep(2)
        return JSONResponse({"errcode": 0, "errmsg": "ok"})

    @staticmethod
    async def _json(request: Request) -> Any:
        try:
            return json.loads((await request.body()).decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            return None

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/robot/send", self.dingtalk, methods=["POST"]),
            Route("/cgi-bin/webhook/send", self.wecom, methods=["POST"]),
            Route("/open-apis/bot/v2/hook/{token}", self.feishu, methods=["POST"]),
            Route("/hooks/alerts", self.webhook, methods=["POST"]),
            Route("/slow/robot/send", self.slow, methods=["POST"]),
        ])
