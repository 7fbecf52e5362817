"""Which canonical fields two copies of a ticket disagree on. The fingerprints are compared first; only
copies whose fingerprints differ are diffed field by field (plain values directly, the others by deepdiff),
so agreeing copies cost one hash."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from deepdiff import DeepDiff

from reconcile.fingerprint import fingerprint

_ROOT_KEY = re.compile(r"^root\['((?:[^'\\]|\\.)*)'\]")


def differing_fields(expected: Mapping[str, Any], actual: Mapping[str, Any],
                     expected_print: bytes | None = None, actual_print: bytes | None = None) -> list[str]:
    """The fields (keys of either side) whose values differ; [] when the copies agree. A field missing on one
    side counts as None there (a system that never stored it agrees with an empty golden value)."""
    if (expected_print or fingerprint(expected)) == (actual_print or fingerprint(actual)):
        return []
    left = {k: v for k, v in expected.items() if v is not None}
    right = {k: v for k, v in actual.items() if v is not None}
    fields: set[str] = set()
    # a field held on one side only, or two values of one plain type (text, a whole number, a flag), is
    # decided here as deepdiff would; only the rest (numbers of two types, lists, objects) go to deepdiff
    for key in left.keys() | right.keys():
        if key not in left or key not in right:
            fields.add(key)
        elif type(left[key]) is type(right[key]) and type(left[key]) in _PLAIN:
            if left[key] != right[key]:
                fields.add(key)
        else:
            fields.update(_deep(key, left[key], right[key]))
    return sorted(fields)


_PLAIN = (str, int, bool)


def _deep(key: str, left: Any, right: Any) -> set[str]:
    diff = DeepDiff({key: left}, {key: right}, ignore_order=True, ignore_numeric_type_changes=True, view="tree")
    fields: set[str] = set()
    for changes in diff.values():
        for change in changes:
            found = _ROOT_KEY.match(change.path())
            if found:
                fields.add(found.group(1).replace("\\'", "'"))
    return fields
