"""A Kuaidi100 push read as the courier's record: state codes reduced to main states, Asia/Shanghai times as
UTC, a delivery only once signed for, and refusals that say what is wrong."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from connectors.kuaidi100.notice import parse_notices
from connectors.kuaidi100.plugin import CONNECTOR_TYPE
from connectors.kuaidi100.wire import format_vendor_time, main_state, parse_vendor_time
from hub.core.errors import InvalidValue


def checkpoint(time: str, context: str, **extra: Any) -> dict[str, Any]:
    return {"time": time, "ftime": time, "context": context, **extra}


def pushed(state: Any, data: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """A push's `param` as Kuaidi100 documents it (status, message, lastResult with the whole track)."""
    return {"status": "polling", "billstatus": "got", "message": "", "autoCheck": "0", "comOld": "", "comNew": "",
            "lastResult": {"message": "ok", "state": state, "status": "200", "condition": "F00", "ischeck": "0",
                           "com": "shunfeng", "nu": "SF1234567890", "data": data}, **extra}


IN_TRANSIT = pushed("0", [checkpoint("2026-02-13 18:05:00", "快件到达【深圳转运中心】", status="在途"),
                          checkpoint("2026-02-13 09:00:00", "顺丰速运 已收取快件", status="揽收")])


@pytest.mark.parametrize(("code", "main"), [
    ("0", "0"), ("1001", "0"), ("1002", "0"), ("1003", "0"),
    ("1", "1"), ("101", "1"), ("102", "1"), ("103", "1"),
    ("5", "5"), ("501", "5"),
    ("3", "3"), ("301", "3"), ("302", "3"), ("303", "3"), ("304", "3"),
    ("4", "4"), ("401", "4"), ("6", "6"), ("7", "7"), ("14", "14"),
    ("2", "2"), ("201", "2"), ("205", "2"), ("210", "2"),
    ("8", "8"), ("10", "8"), ("11", "8"), ("12", "8"), ("13", "8"),
    (" 301 ", "3"), ("99", "99"),  # an undocumented code is kept: the mapping refuses it by name
])
def test_state_codes_reduce_to_their_main_state(code: str, main: str) -> None:
    assert main_state(code) == main


@pytest.mark.parametrize(("vendor", "utc"), [
    ("2026-02-13 18:00:00", datetime(2026, 2, 13, 10, 0, tzinfo=UTC)),
    ("2026-01-01 07:59:59", datetime(2025, 12, 31, 23, 59, 59, tzinfo=UTC)),  # the day before, in UTC
    ("2026-07-01 08:00:00", datetime(2026, 7, 1, 0, 0, tzinfo=UTC)),  # no daylight saving in China
])
def test_vendor_times_are_shanghai_wall_clock(vendor: str, utc: datetime) -> None:
    assert parse_vendor_time(vendor) == utc
    assert format_vendor_time(utc) == vendor


@pytest.mark.parametrize("text", ["2026-02-13T18:00:00Z", "13.02.2026 18:00", "", "2026-02-30 10:00:00"])
def test_a_time_that_is_not_kuaidi100s_is_refused(text: str) -> None:
    with pytest.raises(InvalidValue, match="YYYY-MM-DD HH:MM:SS, Asia/Shanghai"):
        parse_vendor_time(text)


def test_a_parcel_in_transit_is_its_state_and_newest_checkpoint_without_a_delivery() -> None:
    [notice] = parse_notices("courier", IN_TRANSIT)
    record = notice.record
    assert record is not None and notice.local_id == record.local_id == "shunfeng:SF1234567890"
    assert notice.modified_at == record.modified_at == datetime(2026, 2, 13, 10, 5, tzinfo=UTC)
    assert record.author == "kuaidi100" and record.system == "courier"
    assert record.fields == {"com": "shunfeng", "nu": "SF1234567890", "state": "0", "ischeck": "0",
                             "last_context": "快件到达【深圳转运中心】"}


def test_a_signed_parcel_is_delivered_at_its_signing_checkpoint_in_utc() -> None:
    """State 3 (here as sub-state 304): delivered_at is the signing checkpoint's time in UTC, even when a
    later checkpoint follows it, and the ticket status is `delivered`."""
    payload = pushed("304", [
        checkpoint("2026-02-14 20:30:00", "快件已从驿站取出", status="在途"),
        checkpoint("2026-02-14 12:15:00", "快件已由驿站代收", status="投柜或站签收"),
        checkpoint("2026-02-14 08:00:00", "快递员正在派件", status="派件"),
    ])
    payload["lastResult"]["ischeck"] = "1"
    [notice] = parse_notices("courier", payload)
    assert notice.record is not None
    fields = notice.record.fields
    assert fields["state"] == "3" and fields["ischeck"] == "1" and fields["ticket_status"] == "delivered"
    assert fields["delivered_at"] == "2026-02-14T04:15:00Z"
    assert notice.record.modified_at == datetime(2026, 2, 14, 12, 30, tzinfo=UTC)


def test_a_signing_checkpoint_may_carry_its_code_instead_of_its_name() -> None:
    payload = pushed("3", [checkpoint("2026-02-14 12:15:00", "已签收", statusCode="301"),
                           checkpoint("2026-02-14 08:00:00", "派件中", statusCode="5")])
    [notice] = parse_notices("courier", payload)
    assert notice.record is not None and notice.record.fields["delivered_at"] == "2026-02-14T04:15:00Z"


def test_the_newest_checkpoint_is_found_by_time_whatever_the_order() -> None:
    payload = pushed(0, [checkpoint("2026-02-13 09:00:00", "揽收"), checkpoint("2026-02-13 18:05:00", "到达"),
                         checkpoint("2026-02-13 18:05:00", "同一时刻的第二条")])
    [notice] = parse_notices("courier", payload)
    assert notice.record is not None
    assert notice.record.fields["last_context"] == "到达"  # of equal times, the first listed (newest first)
    assert notice.record.fields["state"] == "0"  # a number is read as its code


@pytest.mark.parametrize("state", ["2", "4", "5", "6", "14", "1002"])
def test_only_a_signed_parcel_reports_a_delivery(state: str) -> None:
    payload = pushed(state, IN_TRANSIT["lastResult"]["data"])
    [notice] = parse_notices("courier", payload)
    assert notice.record is not None
    assert "delivered_at" not in notice.record.fields and "ticket_status" not in notice.record.fields


def test_a_corrected_company_keeps_the_parcel_the_hub_subscribed() -> None:
    """When Kuaidi100 corrects the company (autoCheck=1), the parcel is still the one the hub linked."""
    payload = pushed("0", IN_TRANSIT["lastResult"]["data"], autoCheck="1", comOld="yuantong", comNew="shunfeng")
    [notice] = parse_notices("courier", payload)
    assert notice.local_id == "yuantong:SF1234567890"
    assert notice.record is not None and notice.record.fields["com"] == "shunfeng"


def test_a_track_without_checkpoints_changes_nothing() -> None:
    """E.g. `abort` after three days without a checkpoint: stored, acknowledged, and no record."""
    assert parse_notices("courier", pushed("0", [], status="abort", message="3天查询无记录")) == []


@pytest.mark.parametrize(("payload", "words"), [
    (None, "is not a Kuaidi100 push"),
    ({"status": "polling"}, "with `lastResult`"),
    (pushed("0", []) | {"lastResult": []}, "with `lastResult`"),
    ({"lastResult": {**IN_TRANSIT["lastResult"], "com": ""}}, "`lastResult.com` must be a non-empty string"),
    ({"lastResult": {**IN_TRANSIT["lastResult"], "nu": 7}}, "`lastResult.nu` must be a non-empty string"),
    ({"lastResult": {**IN_TRANSIT["lastResult"], "state": None}}, "`lastResult.state` must be a code"),
    ({"lastResult": {**IN_TRANSIT["lastResult"], "data": "none"}}, "`lastResult.data` must be the list"),
    ({"lastResult": {**IN_TRANSIT["lastResult"], "data": ["x"]}}, "`lastResult.data[0]` must be a checkpoint"),
    ({"lastResult": {**IN_TRANSIT["lastResult"], "data": [{"context": "x"}]}}, "`lastResult.data[0]` has no `time`"),
    ({"lastResult": {**IN_TRANSIT["lastResult"], "data": [checkpoint("today", "x")]}},
     "`lastResult.data[0].time`: `today` is not a Kuaidi100 time"),
])
def test_a_payload_that_is_not_a_push_is_refused_saying_what_is_wrong(payload: Any, words: str) -> None:
    with pytest.raises(InvalidValue) as refused:
        CONNECTOR_TYPE.parse_notice("courier", payload)
    assert words in str(refused.value)
