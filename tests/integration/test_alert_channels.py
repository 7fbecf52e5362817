"""Alerts over real sockets: `send_alert` posts to a loopback server that plays each vendor's receiving end
and checks the request as the vendor would (DingTalk's query signature, Feishu's body signature, WeCom's
key, Standard Webhooks via its reference package), then the test asserts what arrived: the format, the
Chinese text intact, the link. Also what a sender must survive: rate limits, a wrong secret (final, and
no secret or token in the result or the logs), a port nobody listens on, a receiver too slow to answer.

The twin's answers are the vendors' documented ones; where a doc names no code (a malformed DingTalk or
WeCom body) the twin picks one, and the tests do not depend on which.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from hub.core.alerts import Alert, AlertSettings, ChannelSettings
from hub.notify import send_alert
from tests.e2e.harness import free_port
from tests.robots import DT_SECRET, DT_TOKEN, FS_SECRET, FS_TOKEN, LINK, TICKET, WC_KEY, WH_SECRET, Twin
from tests.serving import served


@pytest.fixture(scope="module")
def served_twin() -> Iterator[tuple[Twin, str]]:
    twin = Twin()
    with served(twin.app()) as base:
        yield twin, base


@pytest.fixture
def twin(served_twin: tuple[Twin, str]) -> Twin:
    served_twin[0].rate_limited = False
    for received in served_twin[0].seen.values():
        received.clear()
    return served_twin[0]


@pytest.fixture
def env(served_twin: tuple[Twin, str]) -> dict[str, str]:
    base = served_twin[1]
    return {"DT_URL": f"{base}/robot/send?access_token={DT_TOKEN}", "DT_SECRET": DT_SECRET,
            "WC_URL": f"{base}/cgi-bin/webhook/send?key={WC_KEY}",
            "FS_URL": f"{base}/open-apis/bot/v2/hook/{FS_TOKEN}", "FS_SECRET": FS_SECRET,
            "WH_URL": f"{base}/hooks/alerts", "WH_SECRET": WH_SECRET}


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client() as http:
        yield http


CHANNELS = AlertSettings.model_validate({"console_url": "https://hub.example.com", "channels": {
    "ops": {"type": "dingtalk", "url_env": "DT_URL", "secret_env": "DT_SECRET", "mention": ["13800000000"]},
    "ops-text": {"type": "dingtalk", "url_env": "DT_URL", "secret_env": "DT_SECRET", "format": "text"},
    "wecom": {"type": "wecom", "url_env": "WC_URL", "mention": ["zhangsan"]},
    "lark": {"type": "feishu", "url_env": "FS_URL", "secret_env": "FS_SECRET"},
    "lark-en": {"type": "feishu", "url_env": "FS_URL", "secret_env": "FS_SECRET", "format": "text",
                "language": "en"},
    "siem": {"type": "webhook", "url_env": "WH_URL", "secret_env": "WH_SECRET", "language": "en"},
}})


def channel(name: str) -> ChannelSettings:
    return CHANNELS.channels[name]


def alert(kind: str = "no_evidence") -> Alert:
    facts: dict[str, Any] = ({"from_status": "paid", "to_status": "shipped", "missing": "shipment.waybill"}
                             if kind == "no_evidence" else {"dwell_seconds": 7500, "limit_seconds": 3600})
    return Alert(alert_id=f"al_{kind}_42", kind=kind, ticket_id=TICKET, raised_at=datetime.now(UTC),
                 state="paid", system="wms", author="李雷", facts=facts, ticket_url=CHANNELS.ticket_url(TICKET))


def assert_nothing_secret(*texts: str) -> None:
    for text in texts:
        for secret in (DT_TOKEN, DT_SECRET, WC_KEY, FS_TOKEN, FS_SECRET, WH_SECRET):
            assert secret not in text


# ---- each channel, end to end ---------------------------------------------------------------------------------

def test_dingtalk_receives_a_signed_markdown_in_chinese(twin: Twin, env: dict[str, str], client: httpx.Client) -> None:
    """DingTalk's check of timestamp and sign in the query passes, and the markdown reads in Chinese."""
    result = send_alert(channel("ops"), alert(), client, env, name="ops")
    assert (result.outcome, result.code) == ("sent", 0)
    (body,) = twin.seen["dingtalk"]
    assert body["msgtype"] == "markdown"
    text = body["markdown"]["text"]
    assert "缺少证据" in text and "shipment.waybill" in text and "李雷" in text and f"[{TICKET}]({LINK})" in text
    assert body["at"]["atMobiles"] == ["13800000000"] and "@13800000000" in text


def test_dingtalk_text_format(twin: Twin, env: dict[str, str], client: httpx.Client) -> None:
    """The text format arrives as msgtype text with the link in plain sight."""
    assert send_alert(channel("ops-text"), alert("dwell"), client, env).outcome == "sent"
    (body,) = twin.seen["dingtalk"]
    assert body["msgtype"] == "text" and "2小时5分钟" in body["text"]["content"] and LINK in body["text"]["content"]


def test_wecom_receives_markdown_with_its_key(twin: Twin, env: dict[str, str], client: httpx.Client) -> None:
    """WeCom's key check passes; the markdown carries the mention, the dwell and the link."""
    assert send_alert(channel("wecom"), alert("dwell"), client, env).outcome == "sent"
    (body,) = twin.seen["wecom"]
    content = body["markdown"]["content"]
    assert body["msgtype"] == "markdown" and "<@zhangsan>" in content
    assert "「paid」" in content and "2小时5分钟" in content and LINK in content


def test_feishu_receives_a_signed_card(twin: Twin, env: dict[str, str], client: httpx.Client) -> None:
    """Feishu's check of timestamp and sign in the body passes; the card's header names the ticket."""
    assert send_alert(channel("lark"), alert(), client, env).outcome == "sent"
    (body,) = twin.seen["feishu"]
    assert body["msg_type"] == "interactive" and TICKET in body["card"]["header"]["title"]["content"]
    assert "缺少证据" in body["card"]["elements"][0]["text"]["content"]


def test_feishu_text_in_english(twin: Twin, env: dict[str, str], client: httpx.Client) -> None:
    """A text-format, English channel gets plain English text."""
    assert send_alert(channel("lark-en"), alert("dwell"), client, env).outcome == "sent"
    (body,) = twin.seen["feishu"]
    assert body["msg_type"] == "text" and "has been in paid for 2 h 5 min" in body["content"]["text"]


def test_webhook_signature_verifies_with_the_reference_library(twin: Twin, env: dict[str, str],
                                                              client: httpx.Client) -> None:
    """The `standardwebhooks` package accepts the signature; the body is the alert, the id its alert_id."""
    assert send_alert(channel("siem"), alert(), client, env).outcome == "sent"
    (seen,) = twin.seen["webhook"]
    assert seen["headers"]["webhook-id"] == "al_no_evidence_42"
    data = seen["body"]["data"]
    assert seen["body"]["type"] == "alert.no_evidence" and data["ticket_id"] == TICKET
    assert data["facts"]["missing"] == "shipment.waybill" and data["author"] == "李雷" and data["ticket_url"] == LINK


# ---- what a sender must survive --------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "after"), [("ops", 600.0), ("wecom", 60.0), ("lark", 60.0)])
def test_rate_limit_codes_are_retried(twin: Twin, env: dict[str, str], client: httpx.Client, name: str,
                                      after: float) -> None:
    """A robot's rate-limit code (HTTP 200 or 400) is a retry after the vendor's window, not a failure."""
    twin.rate_limited = True
    result = send_alert(channel(name), alert(), client, env)
    assert (result.outcome, result.retry_after) == ("retry", after)
    assert not any(twin.seen.values())


@pytest.mark.parametrize(("name", "variable", "code"), [("ops", "DT_SECRET", 310000), ("lark", "FS_SECRET", 19021),
                                                        ("siem", "WH_SECRET", None)])
def test_wrong_secret_is_final_and_names_no_secret(twin: Twin, env: dict[str, str], client: httpx.Client,
                                                   name: str, variable: str, code: int | None) -> None:
    """A wrong secret is refused by the receiver; the failure is permanent, and neither the result nor the
    log line holds the secret or the URL's token."""
    wrong = "whsec_" + base64.b64encode(b"not the key the receiver holds!!").decode() if name == "siem" else "SECwrong0"
    with capture_logs() as logs:
        result = send_alert(channel(name), alert(), client, {**env, variable: wrong}, name=name)
    assert result.outcome == "failed" and result.code == code
    assert "secret" in result.message or result.status_code == 401
    assert_nothing_secret(result.message, repr(logs))
    assert wrong not in result.message and wrong not in repr(logs)
    (line,) = logs
    assert line["ticket_id"] == TICKET and line["channel"] == name and line["alert_id"] == "al_no_evidence_42"


def test_stale_clock_is_refused_like_a_wrong_secret(twin: Twin, env: dict[str, str], client: httpx.Client) -> None:
    """A hub clock two hours off makes DingTalk refuse the signature: permanent until the clock is fixed."""
    result = send_alert(channel("ops"), alert(), client, env, now=datetime.now(UTC) - timedelta(hours=2))
    assert (result.outcome, result.code) == ("failed", 310000)


def test_wrong_wecom_key_is_final_and_the_key_is_not_repeated(twin: Twin, env: dict[str, str],
                                                            client: httpx.Client) -> None:
    """WeCom's 93000 is permanent; its message, which echoes details of the request, holds no key."""
    bad_url = env["WC_URL"].replace(WC_KEY, "ffffffff-0000-1111-2222-333333333333")
    result = send_alert(channel("wecom"), alert(), client, {**env, "WC_URL": bad_url})
    assert (result.outcome, result.code) == ("failed", 93000)
    assert "ffffffff-0000-1111-2222-333333333333" not in result.message and "key is wrong" in result.message


def test_unreachable_port_is_retried(env: dict[str, str], client: httpx.Client) -> None:
    """Nobody listening: no answer, so retry; the message names no URL or token."""
    url = f"http://127.0.0.1:{free_port()}/robot/send?access_token={DT_TOKEN}"
    with capture_logs() as logs:
        result = send_alert(channel("ops"), alert(), client, {**env, "DT_URL": url})
    assert result.outcome == "retry" and result.status_code is None
    assert_nothing_secret(result.message, repr(logs))
    assert "127.0.0.1" not in result.message


def test_a_receiver_too_slow_is_retried(env: dict[str, str], client: httpx.Client) -> None:
    """A robot that does not answer within the timeout is retried, not waited for."""
    slow = env["DT_URL"].replace("/robot/send", "/slow/robot/send")  # it answers after 2 s
    result = send_alert(channel("ops"), alert(), client, {**env, "DT_URL": slow}, timeout=0.3)
    assert result.outcome == "retry" and "0.3 s" in result.message  # gave up at its own timeout


@pytest.mark.parametrize(("env_change", "variable"), [({"DT_URL": ""}, "DT_URL"), ({"DT_SECRET": ""}, "DT_SECRET"),
                                                      ({"DT_URL": "oapi.dingtalk.com/robot/send"}, "DT_URL")])
def test_missing_or_bad_variable_is_named_not_shown(env: dict[str, str], client: httpx.Client,
                                                    env_change: dict[str, str], variable: str) -> None:
    """A variable that is unset or holds no URL is a permanent failure naming the variable, not its value."""
    result = send_alert(channel("ops"), alert(), client, {**env, **env_change})
    assert result.outcome == "failed" and variable in result.message
    assert_nothing_secret(result.message)
    assert "oapi.dingtalk.com" not in result.message


def test_an_unusable_webhook_secret_is_named_not_shown(env: dict[str, str], client: httpx.Client) -> None:
    """A webhook secret that cannot be a key fails before anything is sent, naming the variable only."""
    result = send_alert(channel("siem"), alert(), client, {**env, "WH_SECRET": "whsec_not base64!"})
    assert result.outcome == "failed" and "WH_SECRET" in result.message and "not base64!" not in result.message
