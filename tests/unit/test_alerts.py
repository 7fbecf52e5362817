"""Alerts, pure: the messages in both languages, each channel's request and signature (checked against the
vendors' documented recipes, computed here independently), what each documented answer means, and the
settings' validation."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import textwrap
import tomllib
import urllib.parse
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from hub.core.alerts import (
    KINDS,
    Alert,
    AlertSettings,
    DingTalkChannel,
    FeishuChannel,
    WebhookChannel,
    WeComChannel,
    build_request,
    classify_answer,
    dingtalk_sign,
    feishu_sign,
    human_duration,
    render,
)
from hub.core.signing import verify_standard

pytestmark = pytest.mark.unit

NOW = datetime(2026, 2, 13, 9, 30, tzinfo=UTC)
TICKET = "SVC-2026-000123"
LINK = f"https://hub.example.com/tickets/{TICKET}"
DINGTALK_URL = "https://oapi.dingtalk.com/robot/send?access_token=dt-token-0123456789"
WECOM_URL = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=wc-key-0123456789"
FEISHU_URL = "https://open.feishu.cn/open-apis/bot/v2/hook/fs-token-0123456789"
SECRET = "SECdeadbeef0123456789"

FACTS: dict[str, dict[str, Any]] = {
    "no_evidence": {"from_status": "paid", "to_status": "shipped", "missing": "shipment.waybill"},
    "not_allowed": {"from_status": "new", "to_status": "resolved"},
    "not_owner": {"field": "customer.phone", "owner": "crm"},
    "dwell": {"dwell_seconds": 7500, "limit_seconds": 3600},
    "dwell_escalation": {"dwell_seconds": 2 * 86400 + 4 * 3600, "limit_seconds": 86400},
    "delivery_dead": {"attempts": 12, "error": "HTTP 422: phone is not valid"},
}
# what each kind's message must say beyond the ticket, state and link: (English, Chinese)
SAYS: dict[str, tuple[list[str], list[str]]] = {
    "no_evidence": (["shipment.waybill", "paid", "shipped", "evidence"], ["shipment.waybill", "缺少证据"]),
    "not_allowed": (["new", "resolved", "not an allowed transition"], ["new", "resolved", "不被允许"]),
    "not_owner": (["customer.phone", "crm", "non-owner", "bob", "erp"], ["customer.phone", "crm", "非归属", "bob"]),
    "dwell": (["2 h 5 min", "1 h"], ["2小时5分钟", "1小时", "停留"]),
    "dwell_escalation": (["2 d 4 h", "Escalation"], ["2天4小时", "升级"]),
    "delivery_dead": (["erp", "12 attempts", "phone is not valid"], ["erp", "12", "放弃"]),
}


def alert(kind: str = "dwell", **changes: Any) -> Alert:
    values: dict[str, Any] = {
        "alert_id": f"al_{kind}_1", "kind": kind, "ticket_id": TICKET, "raised_at": NOW, "state": "shipped",
        "system": "erp", "author": "bob", "facts": FACTS[kind], "ticket_url": LINK}
    return Alert(**{**values, **changes})


def payload(request_body: bytes) -> Any:
    return json.loads(request_body.decode("utf-8"))


# ---- messages --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("language", ["en", "zh"])
def test_every_kind_reads_well_in_both_languages(kind: str, language: str) -> None:
    """Each kind's title, text and markdown name the ticket, its state, who/where, the facts, and the link."""
    title, text, markdown = render(alert(kind), language)  # type: ignore[arg-type]
    english, chinese = SAYS[kind]
    for part in (text, markdown):
        assert TICKET in part and "shipped" in part and LINK in part
        for words in (english if language == "en" else chinese):
            assert words in part, (words, part)
    assert TICKET in title and "?" not in title and "\n" not in title
    assert text.splitlines()[0] == title  # a plain-text message opens with what happened
    assert f"[{TICKET}]({LINK})" in markdown  # the link is clickable where markdown renders
    if language == "zh":
        assert "工单" in text and "状态" in text and "链接：" in text
    else:
        assert "Ticket" in text and "State: shipped" in text and f"Link: {LINK}" in text


def test_a_message_without_link_or_facts_still_names_the_ticket() -> None:
    """Missing facts and no console URL give a shorter message, not an error."""
    title, text, markdown = render(alert("no_evidence", facts={}, ticket_url=None, state=None), "en")
    assert TICKET in title and "Link" not in text and "](" not in markdown
    assert "State: (none)" in text


@pytest.mark.parametrize(("seconds", "en", "zh"), [
    (0, "0 s", "0秒"), (45, "45 s", "45秒"), (300, "5 min", "5分钟"), (3600, "1 h", "1小时"),
    (7500, "2 h 5 min", "2小时5分钟"), (86400 + 3600 * 4 + 59, "1 d 4 h", "1天4小时"), (3 * 86400, "3 d", "3天")])
def test_durations_read_as_a_person_says_them(seconds: int, en: str, zh: str) -> None:
    """Durations are whole units, largest first, two at most."""
    assert human_duration(seconds, "en") == en
    assert human_duration(seconds, "zh") == zh


def test_an_alert_refuses_an_unknown_kind_and_a_naive_time() -> None:
    """A kind outside the documented list, or a time without a zone, is a programming error caught early."""
    with pytest.raises(ValueError, match="unknown alert kind"):
        Alert("al_1", "exploded", TICKET, NOW)
    with pytest.raises(ValueError, match="time zone"):
        alert(raised_at=datetime(2026, 2, 13, 9, 30))


# ---- signatures, from the documented recipes ------------------------------------------------------------------

def test_dingtalk_signature_matches_the_documented_recipe() -> None:
    """DingTalk: urlEncode(base64(HMAC-SHA256(key=secret, msg="{timestamp_ms}\\n{secret}"))), as its Python sample."""
    timestamp = 1_770_975_000_123
    string_to_sign = f"{timestamp}\n{SECRET}".encode()
    expected = urllib.parse.quote_plus(base64.b64encode(
        hmac.new(SECRET.encode("utf-8"), string_to_sign, digestmod=hashlib.sha256).digest()))
    assert dingtalk_sign(SECRET, timestamp) == expected
    # a published vector (docs.rs crate `dingding`, signature.rs test): ("1700000000000", "secret")
    assert dingtalk_sign("secret", 1_700_000_000_000) == "OuzzJR5%2BxZ4%2FEYwqtNt6sMYZQMTa%2FHEGvc9miJe7XzY%3D"


def test_feishu_signature_matches_the_documented_recipe() -> None:
    """Feishu: base64(HMAC-SHA256) with KEY "{timestamp_s}\\n{secret}" and an EMPTY message, as its Python sample."""
    timestamp = 1_770_975_000
    key = f"{timestamp}\n{SECRET}".encode()
    expected = base64.b64encode(hmac.new(key, b"", digestmod=hashlib.sha256).digest()).decode("utf-8")
    assert feishu_sign(SECRET, timestamp) == expected
    dingtalk_style = base64.b64encode(hmac.new(SECRET.encode(), key, hashlib.sha256).digest()).decode()
    assert feishu_sign(SECRET, timestamp) != dingtalk_style  # the trap: the two vendors swap key and message


# ---- request shapes -------------------------------------------------------------------------------------------

def dingtalk(**options: Any) -> DingTalkChannel:
    return DingTalkChannel.model_validate({"type": "dingtalk", "url_env": "DT_URL", **options})


def test_dingtalk_markdown_is_signed_in_the_query_beside_the_token() -> None:
    """A signed DingTalk request keeps access_token and adds timestamp (ms) and sign to the query."""
    request = build_request(dingtalk(secret_env="DT_SECRET"), alert(), DINGTALK_URL, SECRET, NOW)
    assert request.method == "POST" and request.headers["content-type"] == "application/json; charset=utf-8"
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(request.url).query)
    stamp = int(NOW.timestamp() * 1000)
    assert query["access_token"] == ["dt-token-0123456789"] and query["timestamp"] == [str(stamp)]
    assert query["sign"] == [urllib.parse.unquote_plus(dingtalk_sign(SECRET, stamp))]
    body = payload(request.body)
    assert body["msgtype"] == "markdown" and body["markdown"]["title"].startswith(f"工单 {TICKET}")
    assert LINK in body["markdown"]["text"] and "at" not in body


def test_dingtalk_text_mentions_phones_and_user_ids() -> None:
    """Mentions go to atMobiles/atUserIds, and the text names them too, as DingTalk needs to highlight them."""
    channel = dingtalk(format="text", language="en", mention=["13800000000", "manager01"])
    body = payload(build_request(channel, alert(), DINGTALK_URL, None, NOW).body)
    assert body["msgtype"] == "text" and body["text"]["content"].endswith("@13800000000 @manager01")
    assert body["at"] == {"atMobiles": ["13800000000"], "atUserIds": ["manager01"], "isAtAll": False}


def test_unsigned_dingtalk_url_is_left_as_it_is() -> None:
    """Without a secret (a keyword or IP-checked robot) no timestamp or sign is added."""
    assert build_request(dingtalk(), alert(), DINGTALK_URL, None, NOW).url == DINGTALK_URL


def test_wecom_text_and_markdown_shapes() -> None:
    """WeCom: text with mentioned_list/mentioned_mobile_list; markdown with <@userid> in its content."""
    text_channel = WeComChannel.model_validate({"type": "wecom", "url_env": "WC", "format": "text",
                                                "mention": ["zhangsan", "13800000000", "all"]})
    request = build_request(text_channel, alert(), WECOM_URL, None, NOW)
    assert request.url == WECOM_URL
    body = payload(request.body)
    assert body["msgtype"] == "text" and TICKET in body["text"]["content"]
    assert body["text"]["mentioned_list"] == ["zhangsan", "@all"]
    assert body["text"]["mentioned_mobile_list"] == ["13800000000"]
    md_channel = WeComChannel.model_validate({"type": "wecom", "url_env": "WC", "mention": ["zhangsan"]})
    body = payload(build_request(md_channel, alert(), WECOM_URL, None, NOW).body)
    assert body == {"msgtype": "markdown", "markdown": {"content": body["markdown"]["content"]}}
    assert "<@zhangsan>" in body["markdown"]["content"] and LINK in body["markdown"]["content"]


def test_feishu_card_is_signed_in_the_body() -> None:
    """Feishu's markdown goes as an interactive card (lark_md); timestamp (seconds, a string) and sign in the body."""
    channel = FeishuChannel.model_validate({"type": "feishu", "url_env": "FS", "secret_env": "FS_SECRET"})
    request = build_request(channel, alert("no_evidence"), FEISHU_URL, SECRET, NOW)
    assert request.url == FEISHU_URL
    body = payload(request.body)
    stamp = int(NOW.timestamp())
    assert body["timestamp"] == str(stamp) and body["sign"] == feishu_sign(SECRET, stamp)
    assert body["msg_type"] == "interactive"
    assert TICKET in body["card"]["header"]["title"]["content"]
    element = body["card"]["elements"][0]
    assert element["text"]["tag"] == "lark_md" and "shipment.waybill" in element["text"]["content"]
    assert f"[{TICKET}]({LINK})" in element["text"]["content"]


def test_feishu_text_without_secret_has_no_signature_fields() -> None:
    """An unsigned Feishu bot gets exactly msg_type and content."""
    channel = FeishuChannel.model_validate({"type": "feishu", "url_env": "FS", "format": "text"})
    body = payload(build_request(channel, alert(), FEISHU_URL, None, NOW).body)
    assert set(body) == {"msg_type", "content"} and body["msg_type"] == "text" and TICKET in body["content"]["text"]


def test_webhook_is_the_alert_as_json_signed_per_standard_webhooks() -> None:
    """The generic webhook body is the alert in Standard Webhooks' envelope; the signature verifies, and the
    alert_id is the webhook-id so a receiver can dedupe retries."""
    channel = WebhookChannel.model_validate({"type": "webhook", "url_env": "WH", "secret_env": "WH_SECRET",
                                             "language": "en"})
    secret = "whsec_" + base64.b64encode(b"thirty-two bytes of webhook key!").decode()
    request = build_request(channel, alert("not_owner"), "https://siem.example.com/in", secret, NOW)
    assert request.headers["webhook-id"] == "al_not_owner_1"
    assert verify_standard([secret], request.headers, request.body, NOW.timestamp()) == "al_not_owner_1"
    body = payload(request.body)
    assert body["type"] == "alert.not_owner" and body["timestamp"] == "2026-02-13T09:30:00Z"
    data = body["data"]
    assert data["ticket_id"] == TICKET and data["facts"] == FACTS["not_owner"] and data["ticket_url"] == LINK
    assert "customer.phone" in data["title"] and data["message"].startswith("### ")
    with pytest.raises(ValueError, match="secret"):
        build_request(channel, alert(), "https://siem.example.com/in", None, NOW)


def test_chinese_travels_as_utf8_not_escapes() -> None:
    """Bodies are UTF-8 JSON with the Chinese as it is, which every robot reads and logs stay readable."""
    request = build_request(dingtalk(format="text"), alert(), DINGTALK_URL, None, NOW)
    assert "工单".encode() in request.body and b"\\u" not in request.body


# ---- answers ---------------------------------------------------------------------------------------------------

def answer(channel_type: str, status: int | None, body: Any = None, headers: dict[str, str] | None = None) -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return classify_answer(channel_type, status, raw, headers or {}, NOW.timestamp())


@pytest.mark.parametrize(("channel_type", "status", "body", "outcome", "retry_after"), [
    ("dingtalk", 200, {"errcode": 0, "errmsg": "ok"}, "sent", None),
    ("dingtalk", 200, {"errcode": 130101, "errmsg": "send too fast, exceed 20 times per minute"}, "retry", 600.0),
    ("dingtalk", 200, {"errcode": 310000, "errmsg": "sign not match"}, "failed", None),
    ("dingtalk", 200, {"errcode": 300001, "errmsg": "token is not exist"}, "failed", None),
    ("dingtalk", 200, {"errcode": -1, "errmsg": "系统繁忙"}, "retry", None),
    ("wecom", 200, {"errcode": 0, "errmsg": "ok"}, "sent", None),
    ("wecom", 200, {"errcode": 45009, "errmsg": "api freq out of limit"}, "retry", 60.0),
    ("wecom", 200, {"errcode": 93000, "errmsg": "invalid webhook url"}, "failed", None),
    ("feishu", 200, {"code": 0, "msg": "success", "data": {}}, "sent", None),
    ("feishu", 200, {"StatusCode": 0, "StatusMessage": "success"}, "sent", None),
    ("feishu", 200, {"code": 19021, "msg": "sign match fail or timestamp is not within one hour"}, "failed", None),
    ("feishu", 200, {"code": 19024, "msg": "Key Words Not Found"}, "failed", None),
    ("feishu", 400, {"code": 9499, "msg": "Bad Request"}, "failed", None),
    ("feishu", 400, {"code": 11232, "msg": "frequency limited"}, "retry", 60.0),
])
def test_documented_robot_codes(channel_type: str, status: int, body: Any, outcome: str,
                                retry_after: float | None) -> None:
    """Each documented code: success sent, rate limits retried (after the vendor's window), refusals final."""
    result = answer(channel_type, status, body)
    assert (result.outcome, result.retry_after) == (outcome, retry_after)
    if outcome != "sent":
        assert str(next(v for k, v in body.items() if "code" in k.lower())) in result.message


def test_refusals_say_what_to_check() -> None:
    """A refused signature points at the secret and settings, not at the network."""
    assert "secret" in answer("dingtalk", 200, {"errcode": 310000, "errmsg": "sign not match"}).message
    assert "key is wrong" in answer("wecom", 200, {"errcode": 93000, "errmsg": "invalid webhook url"}).message
    assert "clock" in answer("feishu", 200, {"code": 19021, "msg": "sign match fail"}).message


@pytest.mark.parametrize("channel_type", ["dingtalk", "wecom", "feishu", "webhook"])
def test_http_failures_retry_like_any_delivery(channel_type: str) -> None:
    """No answer, 5xx and 429 (honouring Retry-After or Feishu's reset header) retry; other 4xx are final."""
    assert answer(channel_type, None, b"").outcome == "retry"
    assert answer(channel_type, 503, b"<html>down</html>").outcome == "retry"
    assert answer(channel_type, 429, b"", {"Retry-After": "30"}).retry_after == 30.0
    assert answer(channel_type, 404, b"not found").outcome == "failed"


def test_feishu_gateway_limit_uses_its_reset_header() -> None:
    """Feishu's gateway answers 429 with x-ogw-ratelimit-reset (seconds) rather than Retry-After."""
    assert answer("feishu", 429, b"", {"x-ogw-ratelimit-reset": "7"}).retry_after == 7.0


def test_robot_answers_without_a_code_are_not_success() -> None:
    """HTTP 200 with no error code (an HTML page, a proxy) is not a robot: final, not silently 'sent'."""
    for body in (b"<html>ok</html>", b"[]", b'{"ok": true}'):
        result = answer("dingtalk", 200, body)
        assert result.outcome == "failed" and "robot" in result.message
    assert answer("webhook", 204, b"").outcome == "sent"  # a generic webhook needs only a 2xx


def test_unknown_robot_code_is_final_and_quoted() -> None:
    """An undocumented non-zero code is reported with the vendor's words and not retried."""
    result = answer("wecom", 200, {"errcode": 40058, "errmsg": "invalid parameter"})
    assert result.outcome == "failed" and "40058" in result.message and "invalid parameter" in result.message


# ---- settings --------------------------------------------------------------------------------------------------

def settings(**channels: Any) -> AlertSettings:
    return AlertSettings.model_validate({"channels": channels})


def errors(exc: pytest.ExceptionInfo[ValidationError]) -> list[tuple[str, str]]:
    return [(".".join(str(p) for p in e["loc"]), e["msg"]) for e in exc.value.errors()]


def test_the_documented_toml_example_loads() -> None:
    """The TOML in AlertSettings' docstring is valid and gives the channels it shows."""
    doc = AlertSettings.__doc__ or ""
    example = textwrap.dedent(doc[doc.index("        [alerts]"):])
    loaded = AlertSettings.model_validate(tomllib.loads(example)["alerts"])
    assert {n: c.type for n, c in loaded.channels.items()} == {
        "ops": "dingtalk", "wecom": "wecom", "lark": "feishu", "siem": "webhook"}
    assert loaded.ticket_url(TICKET) == LINK
    assert set(loaded.channels_for("not_owner")) == {"ops", "lark", "siem"}  # wecom takes dwell kinds only


def test_unknown_channel_type_is_refused() -> None:
    """A type that is not one of the four names the ones there are."""
    with pytest.raises(ValidationError) as caught:
        settings(chat={"type": "slack", "url_env": "SLACK_URL"})
    assert "dingtalk" in str(caught.value) and "webhook" in str(caught.value)


def test_webhook_without_secret_env_is_refused() -> None:
    """A generic webhook must be signed."""
    with pytest.raises(ValidationError) as caught:
        settings(siem={"type": "webhook", "url_env": "WH_URL"})
    assert ("channels.siem.webhook.secret_env", "Field required") in errors(caught)


def test_a_url_pasted_as_url_env_is_refused_without_echoing_it() -> None:
    """url_env names a variable; a URL there is refused and the message does not repeat its token."""
    with pytest.raises(ValidationError) as caught:
        settings(ops={"type": "dingtalk", "url_env": DINGTALK_URL})
    (location, message), = errors(caught)
    assert location == "channels.ops.dingtalk.url_env" and "NAME of an environment variable" in message
    assert "dt-token" not in message


@pytest.mark.parametrize(("channel", "where"), [
    ({"type": "wecom", "url_env": "WC", "secret_env": "WC_SECRET"}, "secret_env"),  # WeCom has no signing
    ({"type": "dingtalk", "url_env": "DT", "kinds": ["dwell", "fire"]}, "kinds"),
    ({"type": "feishu", "url_env": "FS", "format": "html"}, "format"),
    ({"type": "dingtalk", "url_env": "DT", "language": "fr"}, "language"),
])
def test_channel_keys_are_checked(channel: dict[str, Any], where: str) -> None:
    """Unknown keys, kinds, formats and languages are errors that name the key."""
    with pytest.raises(ValidationError) as caught:
        settings(ops=channel)
    assert any(location.endswith(where) for location, _ in errors(caught))


def test_names_and_console_url_are_checked() -> None:
    """Channel names are like system names; the console URL is an http(s) base, trailing slash dropped."""
    with pytest.raises(ValidationError):
        settings(**{"Ops Room": {"type": "wecom", "url_env": "WC"}})
    with pytest.raises(ValidationError):
        AlertSettings(console_url="hub.example.com")
    assert AlertSettings(console_url="https://hub.example.com/").ticket_url("SVC 1/2") == (
        "https://hub.example.com/tickets/SVC%201%2F2")
    assert AlertSettings().ticket_url(TICKET) is None


def test_raised_at_is_shown_in_utc() -> None:
    """An alert raised in another zone is shown in UTC, which every reader can convert."""
    _, text, _ = render(alert(raised_at=NOW.astimezone(ZoneInfo("Asia/Shanghai"))), "en")
    assert "Raised: 2026-02-13 09:30 UTC" in text
