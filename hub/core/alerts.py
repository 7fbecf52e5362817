"""Alerts and the channels they go to: what an alert says, in English or Chinese, and the exact request each
chat robot or webhook takes, signed. Pure: building a request and reading its answer do no I/O, so every
format and signature is checked without a network (`hub.notify` does the one POST).

An alert is raised when a transition lacks its evidence or is not allowed, a non-owner writes a field, a
ticket dwells too long in a state (then once more, as an escalation), or a delivery is dead-lettered. The
channels are the group robots of DingTalk, WeCom and Feishu/Lark, and a generic webhook signed with
Standard Webhooks. Their documented formats:

DingTalk custom robot (自定义机器人), `POST https://oapi.dingtalk.com/robot/send?access_token=…`:
    {"msgtype": "text", "text": {"content": …}, "at": {"atMobiles": […], "atUserIds": […]}}
    {"msgtype": "markdown", "markdown": {"title": …, "text": …}, "at": …}
    signing (加签), optional: query `timestamp` (unix ms) and `sign` = urlEncode(base64(HMAC-SHA256(key=secret,
    msg="{timestamp}\\n{secret}"))); the timestamp must be within an hour of DingTalk's clock.
    answer (HTTP 200): {"errcode": 0, "errmsg": "ok"}; 130101 sending too fast (20 a minute, then 10 minutes
    blocked); 310000 signature, keyword or IP allow-list refused; 300001 unknown access token.
WeCom group robot (企业微信群机器人), `POST https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=…`:
    {"msgtype": "text", "text": {"content": …, "mentioned_list": […], "mentioned_mobile_list": […]}}
    {"msgtype": "markdown", "markdown": {"content": …}}      (mentions in markdown: `<@userid>`)
    no signing (the key in the URL is the credential); answer {"errcode": 0, "errmsg": "ok"}; 45009 over the
    rate limit (20 a minute per robot); 93000 invalid webhook URL (wrong key); -1 busy.
Feishu/Lark custom bot (自定义机器人), `POST https://open.feishu.cn/open-apis/bot/v2/hook/…`:
    {"msg_type": "text", "content": {"text": …}}
    {"msg_type": "interactive", "card": {"header": {"title": …}, "elements": [{"tag": "div", "text":
        {"tag": "lark_md", "content": …}}]}}                 (Feishu has no plain markdown message type)
    signing (签名校验), optional: body fields `timestamp` (unix seconds, a string) and `sign` = base64(HMAC-SHA256(
    key="{timestamp}\\n{secret}", msg=b"")) — the key is the string, the message is empty; within an hour.
    answer: {"code": 0, "msg": "success"}; 9499 bad request; 19021 signature or timestamp refused; 19022 IP
    not allowed; 19024 keyword missing; 11232 rate limited (100 a minute, 5 a second); HTTP 429 gateway limit.
Generic webhook: a JSON body `{"type": "alert.<kind>", "timestamp": …, "data": {…}}` signed per Standard
    Webhooks (`hub.core.signing.sign_standard`): headers webhook-id (the alert_id, the same on every retry,
    so a receiver can dedupe), webhook-timestamp, webhook-signature.

Robots answer HTTP 200 with their error in the body; `classify_answer` reads it: sent, retry (rate limits,
5xx, 429, no answer) or failed (bad signature, bad token, malformed: no retry can help).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Literal
from urllib.parse import quote, quote_plus

from pydantic import Field, field_validator

from hub.core.ports import parse_retry_after
from hub.core.retry import classify
from hub.core.signing import sign_standard
from hub.core.strict import StrictModel

# ---- the alert -------------------------------------------------------------------------------------------

KINDS: tuple[str, ...] = ("no_evidence", "not_allowed", "not_owner", "dwell", "dwell_escalation", "delivery_dead")
Language = Literal["en", "zh"]
Fact = str | int | float | None


@dataclass(frozen=True)
class Alert:
    """One thing an operator should look at, about one ticket. It holds no secret, so every rendering of it
    may go anywhere.

    kind, and the facts each kind reads (any may be absent; the message then says less):
        no_evidence       from_status, to_status, missing (the evidence, e.g. "shipment.waybill")
        not_allowed       from_status, to_status
        not_owner         field, owner (the system(s) owning it); system/author: who wrote it
        dwell             dwell_seconds, limit_seconds (state: where the ticket is stuck)
        dwell_escalation  dwell_seconds, limit_seconds
        delivery_dead     attempts, error; system: the system the write was for
    `alert_id` is stable for one occurrence: channels use it as the idempotency key.
    """

    alert_id: str
    kind: str
    ticket_id: str
    raised_at: datetime
    state: str | None = None
    system: str | None = None
    author: str | None = None
    facts: Mapping[str, Fact] = field(default_factory=dict)
    ticket_url: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown alert kind `{self.kind}` (one of {', '.join(KINDS)})")
        if self.raised_at.tzinfo is None:
            raise ValueError("raised_at must carry a time zone (the hub keeps UTC)")


# ---- rendering ---------------------------------------------------------------------------------------------

_LABELS: dict[str, dict[str, str]] = {
    "en": {"ticket": "Ticket", "state": "State", "system": "System", "author": "Author",
           "from_status": "From", "to_status": "To", "missing": "Missing evidence", "field": "Field",
           "owner": "Owned by", "dwell_seconds": "Stuck for", "limit_seconds": "Limit", "attempts": "Attempts",
           "error": "Last error", "raised_at": "Raised", "link": "Link", "none": "(none)"},
    "zh": {"ticket": "工单", "state": "状态", "system": "系统", "author": "操作人", "from_status": "原状态",
           "to_status": "目标状态", "missing": "缺少证据", "field": "字段", "owner": "归属系统",
           "dwell_seconds": "已停留", "limit_seconds": "时限", "attempts": "尝试次数", "error": "最后错误",
           "raised_at": "告警时间", "link": "链接", "none": "（无）"},
}
_DURATION_FACTS = frozenset({"dwell_seconds", "limit_seconds"})
_FACT_ORDER = ("from_status", "to_status", "missing", "field", "owner", "dwell_seconds", "limit_seconds",
               "attempts", "error")


def human_duration(seconds: float, language: Language) -> str:
    """A duration as a person says it: "45 s", "5 min", "2 h 5 min", "3 d 4 h" / "45秒", "2小时5分钟", "3天4小时"."""
    total = max(0, int(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        parts = [(days, "d", "天"), (hours, "h", "小时")]
    elif hours:
        parts = [(hours, "h", "小时"), (minutes, "min", "分钟")]
    elif minutes:
        parts = [(minutes, "min", "分钟")]
    else:
        parts = [(secs, "s", "秒")]
    shown = [(n, en, zh) for n, en, zh in parts if n] or [parts[0]]
    if language == "zh":
        return "".join(f"{n}{zh}" for n, _, zh in shown)
    return " ".join(f"{n} {en}" for n, en, _ in shown)


def _fact(alert: Alert, key: str, language: Language, default: str = "?") -> str:
    value = alert.facts.get(key)
    if value is None or value == "":
        return default
    if key in _DURATION_FACTS and isinstance(value, int | float):
        return human_duration(value, language)
    return str(value)


def _headline(alert: Alert, language: Language) -> str:
    """The one line that says what happened, naming the ticket."""
    t, state = alert.ticket_id, alert.state or "?"

    def f(key: str) -> str:
        return _fact(alert, key, language)

    if language == "zh":
        return {
            "no_evidence": f"工单 {t} 状态变更 {f('from_status')} → {f('to_status')} 被拒绝：缺少证据 {f('missing')}",
            "not_allowed": f"工单 {t} 状态变更 {f('from_status')} → {f('to_status')} 不被允许",
            "not_owner": f"工单 {t} 的字段 {f('field')} 被非归属方修改（归属 {f('owner')}）",
            "dwell": f"工单 {t} 在「{state}」状态已停留 {f('dwell_seconds')}，超过时限 {f('limit_seconds')}",
            "dwell_escalation": f"【升级】工单 {t} 仍停留在「{state}」状态，已 {f('dwell_seconds')}"
                                f"（时限 {f('limit_seconds')}）",
            "delivery_dead": f"工单 {t} 写入 {alert.system or '?'} 失败，重试 {f('attempts')} 次后已放弃",
        }[alert.kind]
    return {
        "no_evidence": f"Ticket {t}: {f('from_status')} → {f('to_status')} refused, evidence missing: {f('missing')}",
        "not_allowed": f"Ticket {t}: {f('from_status')} → {f('to_status')} is not an allowed transition",
        "not_owner": f"Ticket {t}: field {f('field')} was changed by a non-owner (owned by {f('owner')})",
        "dwell": f"Ticket {t} has been in {state} for {f('dwell_seconds')}, past its {f('limit_seconds')} limit",
        "dwell_escalation": f"Escalation: ticket {t} is still in {state} after {f('dwell_seconds')} "
                            f"(limit {f('limit_seconds')})",
        "delivery_dead": f"Ticket {t}: delivery to {alert.system or '?'} gave up after {f('attempts')} attempts",
    }[alert.kind]


def _lines(alert: Alert, language: Language) -> list[tuple[str, str]]:
    """(label, value) pairs under the headline: who, where, what is missing or how long, when."""
    labels = _LABELS[language]
    rows = [(labels["ticket"], alert.ticket_id), (labels["state"], alert.state or labels["none"])]
    if alert.system:
        rows.append((labels["system"], alert.system))
    if alert.author:
        rows.append((labels["author"], alert.author))
    rows += [(labels[key], _fact(alert, key, language))
             for key in _FACT_ORDER if alert.facts.get(key) not in (None, "")]
    rows.append((labels["raised_at"], alert.raised_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")))
    return rows


def _markdown_rows(alert: Alert, language: Language, bullet: str = "- ") -> list[str]:
    colon = "：" if language == "zh" else ": "  # Chinese takes the full-width colon, with no space after it
    rows = [f"{bullet}**{label}**{colon}{value}" for label, value in _lines(alert, language)]
    if alert.ticket_url:
        rows.append(f"{bullet}**{_LABELS[language]['link']}**{colon}[{alert.ticket_id}]({alert.ticket_url})")
    return rows


def render(alert: Alert, language: Language) -> tuple[str, str, str]:
    """(title, text, markdown) of an alert. The title is the headline; the text is for plain-text channels,
    the markdown for those that render it. Nothing is escaped: the values are ticket IDs, status, system and
    field names the hub defines, and an author's name, where a stray `*` at worst changes the emphasis."""
    title = _headline(alert, language)
    colon = "：" if language == "zh" else ": "
    text_rows = [f"{label}{colon}{value}" for label, value in _lines(alert, language)]
    if alert.ticket_url:
        text_rows.append(f"{_LABELS[language]['link']}{colon}{alert.ticket_url}")
    text = "\n".join([title, *text_rows])
    markdown = "\n".join([f"### {title}", "", *_markdown_rows(alert, language)])
    return title, text, markdown


# ---- channel settings ------------------------------------------------------------------------------------

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CHANNEL_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
_PHONE = re.compile(r"^\+?[0-9][0-9 -]{4,}$")


def _env_name(value: str | None) -> str | None:
    # the message never repeats the value: someone may have pasted the URL or the secret itself here
    if value is not None and not _ENV_NAME.match(value):
        raise ValueError("must be the NAME of an environment variable (letters, digits, _), e.g. "
                         "TICKETHUB_ALERT_URL; the URL or secret itself goes in that variable, never in the file")
    return value


class _Channel(StrictModel):
    url_env: str  # the variable holding the robot/webhook URL: its access token makes it a secret
    language: Language = "zh"
    kinds: tuple[str, ...] = KINDS  # the alert kinds this channel takes

    @field_validator("url_env", "secret_env", check_fields=False)
    @classmethod
    def _env_names(cls, value: str | None) -> str | None:
        return _env_name(value)

    @field_validator("kinds")
    @classmethod
    def _kinds(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [kind for kind in value if kind not in KINDS]
        if unknown:
            raise ValueError(f"unknown alert kind(s) {', '.join(unknown)}; the kinds are {', '.join(KINDS)}")
        return value

    def takes(self, kind: str) -> bool:
        return kind in self.kinds


class _Robot(_Channel):
    format: Literal["text", "markdown"] = "markdown"


class DingTalkChannel(_Robot):
    type: Literal["dingtalk"]
    secret_env: str | None = None  # the robot's 加签 secret (SEC…); none: the robot checks keywords or IPs
    mention: tuple[str, ...] = ()  # phone numbers (atMobiles), user ids (atUserIds), or "all"


class WeComChannel(_Robot):
    type: Literal["wecom"]  # no signing: the key in the URL is the credential
    mention: tuple[str, ...] = ()  # user ids or phone numbers (text); user ids only in markdown; or "all"


class FeishuChannel(_Robot):
    type: Literal["feishu"]
    secret_env: str | None = None  # the bot's 签名校验 secret


class WebhookChannel(_Channel):
    type: Literal["webhook"]
    secret_env: str  # required: an unsigned webhook could be forged by anyone who learns its URL
    format: Literal["text", "markdown"] = "markdown"  # which rendering `data.message` carries


ChannelSettings = Annotated[DingTalkChannel | WeComChannel | FeishuChannel | WebhookChannel,
                            Field(discriminator="type")]


class AlertSettings(StrictModel):
    """The `[alerts]` table of tickethub.toml and its `[alerts.channels.<name>]` tables. URLs and secrets are
    never in the file: it names the environment variables that hold them. A robot secured by keywords
    rather than a signature needs a keyword every alert contains: "工单" (zh) or "Ticket" (en).
    `mention` entries of digits are phone numbers, others user ids; "all" mentions everyone.

        [alerts]
        console_url = "https://hub.example.com"      # links: https://hub.example.com/tickets/<ticket id>
        timeout_seconds = 5

        [alerts.channels.ops]                        # DingTalk group robot, signed, markdown in Chinese
        type = "dingtalk"
        url_env = "TICKETHUB_DINGTALK_URL"           # https://oapi.dingtalk.com/robot/send?access_token=…
        secret_env = "TICKETHUB_DINGTALK_SECRET"     # SEC…
        mention = ["13800000000"]

        [alerts.channels.wecom]
        type = "wecom"
        url_env = "TICKETHUB_WECOM_URL"              # https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=…
        kinds = ["dwell", "dwell_escalation"]

        [alerts.channels.lark]
        type = "feishu"
        url_env = "TICKETHUB_FEISHU_URL"             # https://open.feishu.cn/open-apis/bot/v2/hook/…
        secret_env = "TICKETHUB_FEISHU_SECRET"
        language = "en"
        format = "text"

        [alerts.channels.siem]                       # anything else: JSON signed per Standard Webhooks
        type = "webhook"
        url_env = "TICKETHUB_ALERT_WEBHOOK_URL"
        secret_env = "TICKETHUB_ALERT_WEBHOOK_SECRET"   # whsec_<base64>
    """

    channels: dict[str, ChannelSettings] = {}
    console_url: str | None = None
    timeout_seconds: float = Field(default=5.0, gt=0)

    @field_validator("channels")
    @classmethod
    def _names(cls, value: dict[str, ChannelSettings]) -> dict[str, ChannelSettings]:
        bad = [name for name in value if not _CHANNEL_NAME.match(name)]
        if bad:
            raise ValueError(f"channel name(s) {', '.join(bad)}: lower-case letters, digits, - or _, "
                             "starting with a letter")
        return value

    @field_validator("console_url")
    @classmethod
    def _console(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be the hub console's base URL, starting with http:// or https://")
        return value.rstrip("/") if value else value

    def ticket_url(self, ticket_id: str) -> str | None:
        """The console link to a ticket, or None without a console_url."""
        return f"{self.console_url}/tickets/{quote(ticket_id, safe='')}" if self.console_url else None

    def channels_for(self, kind: str) -> dict[str, ChannelSettings]:
        """The channels (by name) that take alerts of this kind."""
        return {name: channel for name, channel in self.channels.items() if channel.takes(kind)}


# ---- requests ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class OutboundRequest:
    """One HTTP request to a channel. The URL holds the robot's token: never log it."""

    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes


_JSON_HEADERS = {"content-type": "application/json; charset=utf-8"}  # DingTalk asks for UTF-8 said explicitly


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk's `sign` query value: urlEncode(base64(HMAC-SHA256(secret, "{timestamp}\\n{secret}"))), the final
    form the documentation gives (already URL-encoded, to go into the query as it is)."""
    digest = hmac.new(secret.encode("utf-8"), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return quote_plus(base64.b64encode(digest).decode("ascii"))


def feishu_sign(secret: str, timestamp_s: int) -> str:
    """Feishu's `sign` body field: base64(HMAC-SHA256) whose KEY is "{timestamp}\\n{secret}" and whose message is
    empty (the reverse of DingTalk, and a classic trap)."""
    digest = hmac.new(f"{timestamp_s}\n{secret}".encode(), b"", hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def _json(payload: object) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _with_query(url: str, **params: str) -> str:
    """Append already-encoded query parameters, keeping the URL's own (the access token)."""
    extra = "&".join(f"{key}={value}" for key, value in params.items())
    return f"{url}{'&' if '?' in url else '?'}{extra}"


def _split_mentions(mention: tuple[str, ...]) -> tuple[list[str], list[str], bool]:
    """(phone numbers, user ids, everyone) from a channel's `mention` list."""
    everyone = any(m.lower() in ("all", "@all") for m in mention)
    people = [m for m in mention if m.lower() not in ("all", "@all")]
    return [m for m in people if _PHONE.match(m)], [m for m in people if not _PHONE.match(m)], everyone


def _dingtalk(channel: DingTalkChannel, alert: Alert, url: str, secret: str | None, now: datetime) -> OutboundRequest:
    title, text, markdown = render(alert, channel.language)
    phones, users, everyone = _split_mentions(channel.mention)
    # DingTalk highlights an @ only when the text names the person too
    tail = "".join(f" @{who}" for who in [*phones, *users]) + (" @all" if everyone else "")
    if channel.format == "text":
        payload: dict[str, object] = {"msgtype": "text", "text": {"content": text + tail}}
    else:
        body = markdown + ("\n\n" + tail.strip() if tail else "")
        payload = {"msgtype": "markdown", "markdown": {"title": title, "text": body}}
    if channel.mention:
        payload["at"] = {"atMobiles": phones, "atUserIds": users, "isAtAll": everyone}
    if secret:
        stamp = int(now.timestamp() * 1000)
        url = _with_query(url, timestamp=str(stamp), sign=dingtalk_sign(secret, stamp))
    return OutboundRequest("POST", url, dict(_JSON_HEADERS), _json(payload))


def _wecom(channel: WeComChannel, alert: Alert, url: str) -> OutboundRequest:
    _, text, markdown = render(alert, channel.language)
    phones, users, everyone = _split_mentions(channel.mention)
    if channel.format == "text":
        body: dict[str, object] = {"content": text}
        if users or everyone:
            body["mentioned_list"] = users + (["@all"] if everyone else [])
        if phones:
            body["mentioned_mobile_list"] = phones
        payload: dict[str, object] = {"msgtype": "text", "text": body}
    else:  # markdown has no mention lists, only <@userid> in the content, and no phone numbers
        tail = " ".join(f"<@{who}>" for who in users)
        payload = {"msgtype": "markdown", "markdown": {"content": markdown + (f"\n{tail}" if tail else "")}}
    return OutboundRequest("POST", url, dict(_JSON_HEADERS), _json(payload))


def _feishu(channel: FeishuChannel, alert: Alert, url: str, secret: str | None, now: datetime) -> OutboundRequest:
    title, text, _ = render(alert, channel.language)
    payload: dict[str, object] = {}
    if secret:
        stamp = int(now.timestamp())
        payload.update(timestamp=str(stamp), sign=feishu_sign(secret, stamp))
    if channel.format == "text":
        payload.update(msg_type="text", content={"text": text})
    else:
        # the card's header carries the title; lark_md renders bold and links but no headings or lists
        body = "\n".join(_markdown_rows(alert, channel.language, bullet=""))
        payload.update(msg_type="interactive", card={
            "config": {"wide_screen_mode": True},
            "header": {"title": {"tag": "plain_text", "content": title}, "template": _colour(alert.kind)},
            "elements": [{"tag": "div", "text": {"tag": "lark_md", "content": body}}]})
    return OutboundRequest("POST", url, dict(_JSON_HEADERS), _json(payload))


def _colour(kind: str) -> str:
    return {"dwell": "orange", "no_evidence": "orange", "not_allowed": "orange"}.get(kind, "red")


def webhook_payload(alert: Alert, language: Language, message_format: str = "markdown") -> dict[str, object]:
    """The generic webhook's JSON: Standard Webhooks' recommended envelope around the alert and its message."""
    title, text, markdown = render(alert, language)
    return {
        "type": f"alert.{alert.kind}",
        "timestamp": alert.raised_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "data": {
            "alert_id": alert.alert_id, "kind": alert.kind, "ticket_id": alert.ticket_id, "state": alert.state,
            "system": alert.system, "author": alert.author, "facts": dict(alert.facts),
            "raised_at": alert.raised_at.astimezone(UTC).isoformat(), "ticket_url": alert.ticket_url,
            "language": language, "title": title, "message": markdown if message_format == "markdown" else text,
        },
    }


def _webhook(channel: WebhookChannel, alert: Alert, url: str, secret: str, now: datetime) -> OutboundRequest:
    body = _json(webhook_payload(alert, channel.language, channel.format))
    stamp = int(now.timestamp())
    headers = {**_JSON_HEADERS, "webhook-id": alert.alert_id, "webhook-timestamp": str(stamp),
               "webhook-signature": sign_standard(secret, alert.alert_id, stamp, body)}
    return OutboundRequest("POST", url, headers, body)


def build_request(channel: ChannelSettings, alert: Alert, url: str, secret: str | None,
                  now: datetime) -> OutboundRequest:
    """The request that delivers `alert` to `channel` at `url`, signed with `secret` where the channel signs
    (a webhook always does: ValueError without a secret, or with one that cannot be a key)."""
    if isinstance(channel, DingTalkChannel):
        return _dingtalk(channel, alert, url, secret, now)
    if isinstance(channel, WeComChannel):
        return _wecom(channel, alert, url)
    if isinstance(channel, FeishuChannel):
        return _feishu(channel, alert, url, secret, now)
    if not secret:
        raise ValueError("a webhook channel needs its secret to sign with")
    return _webhook(channel, alert, url, secret, now)


# ---- answers -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ChannelResult:
    """What one attempt did: `sent`, `retry` (after `retry_after` seconds if the channel said) or `failed`
    (no retry can help). `message` says why for a person, and never holds a URL, token or secret."""

    outcome: Literal["sent", "retry", "failed"]
    message: str = ""
    retry_after: float | None = None
    status_code: int | None = None
    code: int | None = None  # the robot's own error code, when it gave one

    @property
    def permanent(self) -> bool:
        return self.outcome == "failed"


# codes each robot documents, with what they mean for a retry; seconds to wait where the vendor says
_RATE_LIMITED: dict[str, dict[int, float]] = {
    "dingtalk": {130101: 600.0},  # over 20 a minute: the robot is blocked for 10 minutes
    "wecom": {45009: 60.0},  # over 20 a minute
    "feishu": {11232: 60.0},  # over 100 a minute or 5 a second
}
_BUSY = {"dingtalk": {-1}, "wecom": {-1}, "feishu": set[int]()}
_REFUSED: dict[str, dict[int, str]] = {
    "dingtalk": {310000: "the robot refused the message: signature, keyword or IP allow-list check failed "
                         "(check the channel's secret and the robot's security settings)",
                 300001: "the robot's access token is unknown (check the channel's URL)"},
    "wecom": {93000: "the robot refused its webhook URL: the key is wrong or the robot was removed",
              40008: "the robot refused the message type", 44004: "the robot refused an empty message"},
    "feishu": {19021: "the bot refused the signature or its timestamp (check the channel's secret and the "
                      "hub's clock)",
               19022: "the bot refused the hub's IP address (its IP allow-list)",
               19024: "the bot refused the message: none of its keywords is in it",
               9499: "the bot refused the request as malformed"},
}
_VENDOR = {"dingtalk": "DingTalk", "wecom": "WeCom", "feishu": "Feishu"}


def _robot_code(body: bytes) -> tuple[int | None, str]:
    """The error code and message in a robot's answer: errcode/errmsg, code/msg, or StatusCode/StatusMessage."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None, ""
    if not isinstance(data, dict):
        return None, ""
    for code_key, msg_key in (("errcode", "errmsg"), ("code", "msg"), ("StatusCode", "StatusMessage")):
        code = data.get(code_key)
        if isinstance(code, int) and not isinstance(code, bool):
            return code, str(data.get(msg_key) or "")[:200]
    return None, ""


def _wait(headers: Mapping[str, str], now_epoch: float, default: float | None) -> float | None:
    found = {name.lower(): value for name, value in headers.items()}
    asked = parse_retry_after(found.get("retry-after"), now_epoch)
    if asked is None:  # Feishu's gateway says when its window resets instead
        asked = parse_retry_after(found.get("x-ogw-ratelimit-reset"), now_epoch)
    return asked if asked is not None else default


def classify_answer(channel_type: str, status_code: int | None, body: bytes, headers: Mapping[str, str],
                    now_epoch: float) -> ChannelResult:
    """What a channel's answer means. Robots answer HTTP 200 with an error code in the body (and Feishu
    sometimes 400 with one), so the body's code decides first; then the HTTP status as for any delivery."""
    if status_code is None:
        return ChannelResult("retry", "no answer (timeout or connection refused)")
    if channel_type in _RATE_LIMITED:
        vendor = _VENDOR[channel_type]
        code, vendor_msg = _robot_code(body)
        said = f" ({vendor_msg})" if vendor_msg else ""
        if code == 0 and 200 <= status_code < 300:
            return ChannelResult("sent", status_code=status_code, code=0)
        if code in _RATE_LIMITED[channel_type]:
            return ChannelResult("retry", f"{vendor} rate-limited the robot: code {code}{said}",
                                 _wait(headers, now_epoch, _RATE_LIMITED[channel_type][code]), status_code, code)
        if code in _BUSY[channel_type]:
            return ChannelResult("retry", f"{vendor} is busy: code {code}{said}", _wait(headers, now_epoch, None),
                                 status_code, code)
        if code is not None and code in _REFUSED[channel_type]:
            return ChannelResult("failed", f"{vendor}: {_REFUSED[channel_type][code]}; code {code}{said}",
                                 status_code=status_code, code=code)
        if 200 <= status_code < 300:
            if code is None:
                return ChannelResult("failed", f"{vendor} answered HTTP {status_code} without an error code in its "
                                     "body: the URL does not look like one of its robots", status_code=status_code)
            return ChannelResult("failed", f"{vendor} refused the message: code {code}{said}",
                                 status_code=status_code, code=code)
    verdict = classify(status_code)
    if verdict == "delivered":
        return ChannelResult("sent", status_code=status_code)
    if verdict == "retry":
        return ChannelResult("retry", f"HTTP {status_code}", _wait(headers, now_epoch, None), status_code)
    return ChannelResult("failed", f"HTTP {status_code}: refused; no retry can help", status_code=status_code)
