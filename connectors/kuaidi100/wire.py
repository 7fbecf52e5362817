"""Kuaidi100's wire formats, shared by the connector, its push scheme and the twin. Pure: no I/O.

    real-time query   POST {base_url}/poll/query.do     form: customer, sign, param
                      param = {"com","num","phone"?,"resultv2":"1"}              (compact JSON)
                      sign  = upper-case hex MD5 of param + key + customer
    subscription      POST {base_url}/poll              form: schema=json, param
                      param = {"company","number","key","parameters":{"callbackurl","salt","resultv2":"1","phone"?}}
    push (callback)   POST {callbackurl}                form: param, sign
                      sign  = upper-case hex MD5 of param + salt                (compared case-insensitively)

Both answers are JSON with HTTP 200: a track (`message, state, status, condition, ischeck, com, nu, data[]`,
checkpoints newest first) or `{"result": false, "returnCode": "...", "message": "..."}`. Times are
Asia/Shanghai wall-clock `YYYY-MM-DD HH:MM:SS`.

Sources: kuaidi100-api/python-demo `code/synquery.py` (query form, sign recipe, upper case) and
`code/subscribe.py` (subscription form and param names); kuaidi100-api/java-demo `QueryTrackReq`,
`QueryTrackResp`, `SubscribeResp`, `SubscribePushParamResp` (answer and push fields); api.kuaidi100.com
(FAQ "dingyueyuantong": push sign = MD5(param + salt), 32 upper-case hex; the subscription guide's return
codes; the real-time query guide's state table with resultv2 sub-states).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qs, urlencode

from hub.core.errors import InvalidValue

QUERY_PATH = "/poll/query.do"
SUBSCRIBE_PATH = "/poll"
FORM_TYPE = "application/x-www-form-urlencoded"
MAX_NUMBER_LENGTH = 32  # "单号的最大长度是32个字符"

# China has kept UTC+8 without daylight saving since 1991: a fixed offset is exact for every date a parcel
# can carry, and needs no time zone database on the host.
VENDOR_TZ = timezone(timedelta(hours=8), "Asia/Shanghai")
VENDOR_TIME = "%Y-%m-%d %H:%M:%S"

# ---- states -------------------------------------------------------------------------------------------------

# main state -> its documented name; with resultv2 a track (or a checkpoint) may carry a sub-state instead
MAIN_STATES: dict[str, str] = {
    "0": "在途", "1": "揽收", "2": "疑难", "3": "签收", "4": "退签", "5": "派件", "6": "退回", "7": "转投",
    "8": "清关", "14": "拒签",
}
# sub-state -> (its main state, its documented name)
SUB_STATES: dict[str, tuple[str, str]] = {
    "101": ("1", "已下单"), "102": ("1", "待揽收"), "103": ("1", "已揽收"),
    "1001": ("0", "到达派件城市"), "1002": ("0", "干线"), "1003": ("0", "转递"),
    "501": ("5", "投柜或驿站"),
    "301": ("3", "本人签收"), "302": ("3", "派件异常后签收"), "303": ("3", "代签"), "304": ("3", "投柜或站签收"),
    "401": ("4", "已销单"),
    "201": ("2", "超时未签收"), "202": ("2", "超时未更新"), "203": ("2", "拒收"), "204": ("2", "派件异常"),
    "205": ("2", "柜或驿站超时未取"), "206": ("2", "无法联系"), "207": ("2", "超区"), "208": ("2", "滞留"),
    "209": ("2", "破损"), "210": ("2", "销单"),
    "10": ("8", "待清关"), "11": ("8", "清关中"), "12": ("8", "已清关"), "13": ("8", "清关异常"),
}
SIGNED = "3"
FINAL_STATES = frozenset({"3", "4"})  # signed, or signed for on its way back: ischeck = 1


def main_state(code: str) -> str:
    """The main state of a state code: a sub-state (e.g. 301, 1001) is reduced to its main one (3, 0). A code
    the table does not know is kept as it is, so that the mapping refuses it by name instead of guessing."""
    code = code.strip()
    if code in MAIN_STATES:
        return code
    return SUB_STATES[code][0] if code in SUB_STATES else code


def state_name(code: str) -> str:
    """The documented name of a state code (what a checkpoint's `status` says with resultv2=1)."""
    return MAIN_STATES.get(code) or SUB_STATES.get(code, ("", ""))[1]


# what a checkpoint's `status` says when it is the signature (resultv2=1 names states, it does not code them)
SIGNED_NAMES = frozenset({MAIN_STATES[SIGNED], "已签收"}
                         | {name for main, name in SUB_STATES.values() if main == SIGNED})

# ---- answers ------------------------------------------------------------------------------------------------

# real-time query: returnCode -> what it means (the fix is the connector's)
QUERY_CODES: dict[str, str] = {
    "400": "找不到对应公司: incomplete data, an unknown company code, a wrong customer id, or no queries left",
    "408": "the phone number check failed (some couriers, e.g. shunfeng, need the recipient's or sender's phone)",
    "500": "查询无结果: no tracking for this waybill yet",
    "501": "server error",
    "502": "server busy: too many queries",
    "503": "验证签名失败: the signature does not match",
    "601": "POLL:KEY已过期: the key has expired",
}
# subscription: returnCode -> what it means; 200 and 501 (already subscribed and tracked) are successes
SUBSCRIBE_CODES: dict[str, str] = {
    "200": "提交成功",
    "501": "重复订阅: already subscribed and tracked",
    "500": "server error",
    "502": "server busy: too many requests",
    "600": "您不是合法的订阅者: the key is wrong",
    "601": "POLL:KEY已过期: the key has expired",
    "700": "订阅数据存在错误: an unsupported company code, an empty or too long number, or a bad callback URL",
    "701": "拒绝订阅的快递公司: Kuaidi100 refuses subscriptions for this company",
    "702": "POLL:识别不到该单号对应的快递公司: the number matches no company",
}

# ---- signing ------------------------------------------------------------------------------------------------


def compact_json(value: Any) -> str:
    """JSON as the `param` field carries it: no spaces, so the signed text is the text sent."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def md5_upper(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest().upper()


def query_sign(param: str, key: str, customer: str) -> str:
    """The real-time query's `sign`: upper-case hex MD5 of param + key + customer, with no separators."""
    return md5_upper(param + key + customer)


def push_sign(param: str, salt: str) -> str:
    """A push's `sign`: upper-case hex MD5 of param + the salt given when subscribing."""
    return md5_upper(param + salt)


# ---- forms and times ----------------------------------------------------------------------------------------


def encode_form(fields: Mapping[str, str]) -> bytes:
    return urlencode(fields).encode("ascii")


def parse_form(body: bytes) -> dict[str, list[str]]:
    """A UTF-8 form body's fields; ValueError for a body that is not one."""
    text = body.decode("utf-8")  # UnicodeDecodeError is a ValueError
    return parse_qs(text, keep_blank_values=True, strict_parsing=bool(text), encoding="utf-8", errors="strict",
                    max_num_fields=64)


def single(form: Mapping[str, list[str]], name: str) -> str | None:
    """The one value of a form field, None if absent; ValueError if it is repeated (which one was signed?)."""
    values = form.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise ValueError(f"form field {name} is given {len(values)} times")
    return values[0]


def parse_vendor_time(text: str) -> datetime:
    """A Kuaidi100 time (Asia/Shanghai wall clock) as an aware UTC datetime; InvalidValue otherwise."""
    try:
        return datetime.strptime(text.strip(), VENDOR_TIME).replace(tzinfo=VENDOR_TZ).astimezone(UTC)
    except ValueError:
        raise InvalidValue(f"`{text[:40]}` is not a Kuaidi100 time (YYYY-MM-DD HH:MM:SS, Asia/Shanghai)") from None


def format_vendor_time(moment: datetime) -> str:
    return moment.astimezone(VENDOR_TZ).strftime(VENDOR_TIME)


def split_local_id(local_id: str) -> tuple[str, str] | None:
    """(company code, waybill) of a courier record's local ID `<com>:<num>`, None if it is not one."""
    com, sep, num = local_id.partition(":")
    return (com, num) if sep and com and num else None
