"""A stable fingerprint of a copy's fields: the same values give the same bytes, whatever the key order."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import orjson

_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


def canonical_bytes(fields: Mapping[str, Any]) -> bytes:
    """The fields as canonical JSON: keys sorted, no whitespace, UTF-8 (Chinese text as is)."""
    return orjson.dumps(fields, option=_OPTIONS, default=str)


def fingerprint(fields: Mapping[str, Any]) -> bytes:
    """16 bytes of blake2b over the canonical JSON of `fields`' values that are not None (a field a copy
    does not hold and a field it holds empty are the same)."""
    if None in fields.values():  # (most copies hold every field: no new dict for them)
        fields = {name: value for name, value in fields.items() if value is not None}
    return hashlib.blake2b(canonical_bytes(fields), digest_size=16).digest()
