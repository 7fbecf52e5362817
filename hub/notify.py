"""Send one alert to one channel: the only I/O of alerting. The request and the reading of the answer are
pure (`hub.core.alerts`); this resolves the channel's URL and secret from the environment, does the POST,
and reports what happened. It never raises for a channel's failure and never retries: the caller (a
Celery task) retries on `retry`, so retries live in one layer.

A robot's URL carries its access token, so neither the URL nor the secret appears in a result, an error
or a log line: a missing variable is reported by its NAME, and any message is scrubbed of both.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from urllib.parse import urlsplit

import httpx
import structlog

from hub.core.alerts import (
    Alert,
    ChannelResult,
    ChannelSettings,
    WebhookChannel,
    build_request,
    classify_answer,
)
from hub.core.signing import standard_key

log = structlog.get_logger("tickethub.alerts")
DEFAULT_TIMEOUT = 5.0  # seconds; [alerts] timeout_seconds
_TOKEN_PART = re.compile(r"[^/?&=#]{8,}")  # path segments and query values long enough to be a token


def send_alert(channel: ChannelSettings, alert: Alert, client: httpx.Client, env: Mapping[str, str] = os.environ,
               now: datetime | None = None, *, name: str = "", timeout: float = DEFAULT_TIMEOUT) -> ChannelResult:
    """Deliver `alert` to `channel` (called `name` in the configuration) and say what happened: sent, retry
    (no answer, rate-limited, 5xx) or failed (misconfigured or refused: no retry can help)."""
    now = now or datetime.now(UTC)
    bound = log.bind(ticket_id=alert.ticket_id, channel=name, channel_type=channel.type, alert_id=alert.alert_id,
                     kind=alert.kind)
    url, secret, problem = _resolve(channel, env)
    if problem is not None:
        bound.warning("alert not sent", outcome="failed", reason=problem)
        return ChannelResult("failed", problem)
    assert url is not None  # for mypy: _resolve gives a URL or a problem
    request = build_request(channel, alert, url, secret, now)
    try:
        response = client.request(request.method, request.url, headers=dict(request.headers), content=request.body,
                                   timeout=timeout)
    except httpx.TimeoutException:
        result = ChannelResult("retry", f"no answer within {timeout:g} s")
    except httpx.TransportError as exc:  # the exception's text may quote the URL: name its type only
        result = ChannelResult("retry", f"no answer ({type(exc).__name__})")
    except httpx.InvalidURL:
        result = ChannelResult("failed", f"the URL in {channel.url_env} is not a valid URL")
    else:
        result = classify_answer(channel.type, response.status_code, response.content, response.headers,
                                 now.timestamp())
    result = _scrubbed(result, url, secret)
    fields = {"outcome": result.outcome, "status_code": result.status_code, "code": result.code,
              "retry_after": result.retry_after}
    if result.outcome == "sent":
        bound.info("alert sent", **fields)
    else:
        bound.warning("alert not sent", reason=result.message, **fields)
    return result


def _resolve(channel: ChannelSettings, env: Mapping[str, str]) -> tuple[str | None, str | None, str | None]:
    """(url, secret, None), or (None, None, a problem naming the variable and never its value)."""
    url = env.get(channel.url_env, "").strip()
    if not url:
        return None, None, f"environment variable {channel.url_env} is not set (it holds the channel's URL)"
    if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
        return None, None, f"environment variable {channel.url_env} does not hold an http(s) URL"
    secret_env = getattr(channel, "secret_env", None)
    if secret_env is None:
        return url, None, None
    secret = env.get(secret_env, "").strip()
    if not secret:
        return None, None, f"environment variable {secret_env} is not set (it holds the channel's signing secret)"
    if isinstance(channel, WebhookChannel):
        try:
            standard_key(secret)
        except ValueError as exc:  # its message names no secret
            return None, None, f"the secret in environment variable {secret_env} is not usable: {exc}"
    return url, secret, None


def _scrubbed(result: ChannelResult, url: str, secret: str | None) -> ChannelResult:
    """The result with the secret and any token-like part of the URL masked out of its message: a vendor's
    error text might echo what it was sent."""
    parts = urlsplit(url)
    hidden = [secret] if secret else []
    hidden += _TOKEN_PART.findall(parts.path) + _TOKEN_PART.findall(parts.query)
    message = result.message
    for value in sorted(hidden, key=len, reverse=True):
        message = message.replace(value, "***")
    if message == result.message:
        return result
    return ChannelResult(result.outcome, message, result.retry_after, result.status_code, result.code)
