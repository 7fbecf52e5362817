"""A Kuaidi100 track as the hub's record, from a push's `param` or a real-time query's answer. Pure.

    local_id       "<com>:<nu>" (the company the hub subscribed with, when Kuaidi100 corrected it: comOld)
    modified_at    the newest checkpoint's time (Asia/Shanghai wall clock, as UTC)
    author         "kuaidi100"
    fields         com, nu, state (the MAIN state code), ischeck, last_context (newest checkpoint's text),
                   and when signed (state "3"): delivered_at (ISO 8601 UTC), ticket_status = "delivered"

A track without checkpoints (e.g. a push that only says tracking was aborted) is no record: its push is
stored and changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from connectors.kuaidi100.wire import SIGNED, SIGNED_NAMES, main_state, parse_vendor_time
from hub.core.canonical import format_datetime
from hub.core.errors import InvalidValue
from hub.core.ports import Notice, SourceRecord

AUTHOR = "kuaidi100"


@dataclass(frozen=True)
class Checkpoint:
    at: datetime
    context: str
    state: str | None  # the checkpoint's own state code, when the answer carries one (statusCode)
    name: str | None  # its state's name (status), with resultv2


def parse_notices(system: str, payload: Any) -> list[Notice]:
    """What a push's `param` says: the whole track of one parcel. InvalidValue names what is wrong."""
    if not isinstance(payload, dict) or not isinstance(payload.get("lastResult"), dict):
        raise InvalidValue(f"payload for {system} is not a Kuaidi100 push: expected the object in its form field "
                           "`param`, with `lastResult`")
    subscribed_com = None
    if payload.get("autoCheck") == "1":  # Kuaidi100 corrected the company: the hub knows the parcel by the old one
        old = payload.get("comOld")
        subscribed_com = old if isinstance(old, str) and old else None
    record = record_from_track(system, payload["lastResult"], "lastResult", subscribed_com)
    return [Notice(record.local_id, record.modified_at, record)] if record is not None else []


def record_from_track(system: str, track: Mapping[str, Any], where: str,
                      subscribed_com: str | None = None) -> SourceRecord | None:
    """The record of one track (`lastResult`, or a query's answer); None when it has no checkpoint yet."""
    com, nu = _text(track, "com", where), _text(track, "nu", where)
    state = main_state(_code(track, "state", where))
    ischeck = _code(track, "ischeck", where) if track.get("ischeck") is not None else "0"
    data = track.get("data")
    if not isinstance(data, list):
        raise InvalidValue(f"`{where}.data` must be the list of checkpoints")
    checkpoints = [_checkpoint(item, f"{where}.data[{i}]") for i, item in enumerate(data)]
    if not checkpoints:
        return None
    newest = _newest(checkpoints)
    fields: dict[str, Any] = {"com": com, "nu": nu, "state": state, "ischeck": ischeck,
                              "last_context": newest.context}
    if state == SIGNED:
        signed = _newest([c for c in checkpoints if _is_signed(c)] or [newest])
        fields["delivered_at"] = format_datetime(signed.at)
        fields["ticket_status"] = "delivered"
    return SourceRecord(system, f"{subscribed_com or com}:{nu}", newest.at, AUTHOR, fields)


def _newest(checkpoints: list[Checkpoint]) -> Checkpoint:
    """The latest by time; of equal times the first listed (Kuaidi100 lists newest first)."""
    return max(checkpoints, key=lambda c: c.at)  # max keeps the first of equal keys


def _is_signed(checkpoint: Checkpoint) -> bool:
    if checkpoint.state is not None:
        return main_state(checkpoint.state) == SIGNED
    return checkpoint.name in SIGNED_NAMES


def _checkpoint(item: Any, where: str) -> Checkpoint:
    if not isinstance(item, dict):
        raise InvalidValue(f"`{where}` must be a checkpoint object")
    when = item.get("time") or item.get("ftime")
    if not isinstance(when, str):
        raise InvalidValue(f"`{where}` has no `time`")
    try:
        at = parse_vendor_time(when)
    except InvalidValue as exc:
        raise InvalidValue(f"`{where}.time`: {exc}") from None
    context = item.get("context")
    code, name = item.get("statusCode"), item.get("status")
    return Checkpoint(at, context if isinstance(context, str) else "",
                      str(code) if isinstance(code, (str, int)) and not isinstance(code, bool) and str(code) else None,
                      name if isinstance(name, str) else None)


def _text(track: Mapping[str, Any], name: str, where: str) -> str:
    value = track.get(name)
    if not isinstance(value, str) or not value.strip():
        raise InvalidValue(f"`{where}.{name}` must be a non-empty string")
    return value.strip()


def _code(track: Mapping[str, Any], name: str, where: str) -> str:
    """A code Kuaidi100 documents as a string and sometimes sends as a number."""
    value = track.get(name)
    if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip():
        raise InvalidValue(f"`{where}.{name}` must be a code (digits, as a string or a number)")
    return str(value).strip()
