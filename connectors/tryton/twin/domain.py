"""Tryton domains and orders evaluated the way trytond 8.2 turns them into SQL and SQLite runs that SQL.

A domain is a list of leaves `[field, operator, value]` and nested lists, joined by AND unless the first
element is "OR". SQL's three-valued logic is kept: a NULL column matches only `= None`, `!= None` (IS NOT NULL),
or an `in` list holding None; `!=`, `not in` and every comparison leave NULLs out (`fields/field.py`
convert_domain, `_domain_add_null`) — except on a Char or Text field that is not required, which trytond
compares as COALESCE(column, '') with None as '' (`fields/char.py`): there NULL equals '', so `!= "A"`,
`not in ["A"]`, `not like` and `< "B"` take the NULLs too. `like`/`ilike` are SQLite's LIKE: `%`, `_`, `\\`
escapes, case-insensitive for ASCII. A dotted leaf (`product.code`) is a subquery on the Many2One's target;
a record with no link matches only a negative leaf (`not …`, or `!=` a value: `fields/many2one.py`).

Orders: `ASC` puts NULLs first and `DESC` last (SQLite), unless `NULLS FIRST|LAST` is given; rows equal on
every key come in id order (SQLite's rowid order, and trytond appends `id` when there is a limit or offset).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from functools import cmp_to_key
from typing import Any

from connectors.tryton.twin.models import MODELS, Field, Model, field_of

Row = dict[str, Any]
Resolve = Callable[[Model, Row, str], Any]  # the value of a (possibly computed) field of a row
Follow = Callable[[str, Any], "Row | None"]  # the row a Many2One value points to

OPERATORS = {"=", "!=", "<", "<=", ">", ">=", "in", "not in", "like", "ilike", "not like", "not ilike"}
# what trytond answers for a leaf it cannot parse (its domain walker recurses on it until Python gives up)
BAD_LEAF = "maximum recursion depth exceeded in __instancecheck__"


class DomainError(Exception):
    """A domain or order trytond refuses; `args[0]` is the error text it puts in the answer."""


class NotEmulated(Exception):
    """Valid for the real server, not emulated here (the HTTP layer answers 501)."""


def check(model: Model, domain: Any) -> None:
    """Refuse a domain as trytond does while building its SQL, before any row is looked at."""
    if not isinstance(domain, (list, tuple)):
        raise DomainError(BAD_LEAF)
    if not _is_leaf(domain):
        for part in list(domain)[1 if domain and isinstance(domain[0], str) else 0:]:
            check(model, part)
        return
    if len(domain) != 3 or domain[1] not in OPERATORS:
        if len(domain) in (3, 4) and domain[1] in ("child_of", "not child_of", "parent_of", "not parent_of", "where"):
            raise NotEmulated(f"domain operator {domain[1]!r}")
        raise DomainError(BAD_LEAF)
    head, _, rest = domain[0].partition(".")
    spec = _field(model, head)
    if not spec.searchable:
        raise DomainError(f'Missing search function for field "{spec.label}" in "{model.label}".')
    if rest:
        if spec.type != "many2one" or spec.relation not in MODELS:
            raise NotEmulated(f"a dotted domain on the {spec.type} field {head!r}")
        check(MODELS[str(spec.relation)], [rest, *domain[1:]])
    elif spec.type in ("many2one", "many2many") and isinstance(domain[2], str):
        raise NotEmulated("a Many2One compared with text (a rec_name search)")


def matches(model: Model, row: Row, domain: Any, resolve: Resolve, follow: Follow) -> bool:
    """Whether `row` is in a domain that passed `check`."""
    if _is_leaf(domain):
        return _leaf(model, row, domain, resolve, follow)
    parts = list(domain)
    joiner = parts.pop(0) if parts and isinstance(parts[0], str) else "AND"
    results = (matches(model, row, part, resolve, follow) for part in parts)
    return any(results) if joiner == "OR" else all(results)


def _is_leaf(domain: Sequence[Any]) -> bool:
    return bool(domain) and isinstance(domain[0], str) and domain[0] not in ("AND", "OR")


def _leaf(model: Model, row: Row, leaf: Sequence[Any], resolve: Resolve, follow: Follow) -> bool:
    name, operator, value = leaf
    head, _, rest = name.partition(".")
    spec = field_of(model, head)
    if rest:
        target = follow(str(spec.relation), row.get(head))
        if target is None:  # many2one.py: a negative leaf also takes the records with no link
            return (operator.startswith("not") and not (operator == "not in" and None in value)) or (
                operator == "!=" and value is not None)
        return _leaf(MODELS[str(spec.relation)], target, [rest, operator, value], resolve, follow)
    if head == "rec_name":
        negative = operator.startswith("!") or operator.startswith("not ")
        leaves = [[f, operator, value] for f in model.rec_name_fields]
        return matches(model, row, ["AND" if negative else "OR", *leaves], resolve, follow)
    column = resolve(model, row, head)
    if spec.type in ("char", "text") and not spec.required:  # char.py: COALESCE(column, '') and None as ''
        column = "" if column is None else column
        if operator in ("in", "not in") and isinstance(value, (list, tuple)):
            value = ["" if v is None else v for v in value]
        elif value is None:
            value = ""
    return compare(column, operator, value)


def compare(column: Any, operator: str, value: Any) -> bool:
    """One SQL comparison, NULL semantics included."""
    if isinstance(column, list):  # a x2many column: does any linked id match (trytond: a subquery)
        return any(compare(item, operator, value) for item in column) if operator in ("=", "in") else \
            all(compare(item, operator, value) for item in column)
    if operator in ("in", "not in"):
        values = list(value or [])
        if operator == "in":
            return (column is None and None in values) or (column is not None and _member(column, values))
        if not values:
            return True  # NOT IN () is TRUE in trytond, even for NULL
        return column is not None and None not in values and not _member(column, values)
    if value is None:
        if operator == "=":
            return column is None
        if operator == "!=":
            return column is not None
        return False
    if column is None:
        return False
    if operator in ("like", "ilike", "not like", "not ilike"):
        hit = _like(str(value)).fullmatch(str(column)) is not None
        return hit if not operator.startswith("not") else not hit
    try:
        return bool({"=": column == value, "!=": column != value, "<": column < value, "<=": column <= value,
                     ">": column > value, ">=": column >= value}[operator])
    except TypeError:  # SQLite would compare across storage classes; the twin does not guess
        raise NotEmulated(f"comparing {type(column).__name__} with {type(value).__name__}") from None


def _member(column: Any, values: list[Any]) -> bool:
    return any(v is not None and column == v for v in values)


def _like(pattern: str) -> re.Pattern[str]:
    out, escaped = [], False
    for char in pattern:
        if escaped:
            out.append(re.escape(char))
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "%":
            out.append(".*")
        elif char == "_":
            out.append(".")
        else:
            out.append(re.escape(char))
    return re.compile("".join(out), re.IGNORECASE | re.DOTALL)


def parse_order(model: Model, order: Any) -> list[tuple[str, bool, bool]]:
    """[(field, descending, nulls first)] from `[[field, "ASC"|"DESC"[ NULLS FIRST|LAST]], …]`; None is the
    model's own order."""
    if order is None or order is False:
        order = [list(pair) for pair in model.order]
    keys = []
    for item in order:
        name, direction = item[0], (item[1] or "ASC")
        _field(model, str(name).partition(".")[0])
        words = str(direction).upper()
        kind, _, nulls = words.partition(" ")
        if kind not in ("ASC", "DESC") or nulls not in ("", "NULLS FIRST", "NULLS LAST"):
            raise DomainError(repr(kind if kind not in ("ASC", "DESC") else nulls))
        descending = kind == "DESC"
        nulls_first = nulls == "NULLS FIRST" if nulls else not descending
        keys.append((str(name), descending, nulls_first))
    return keys


def _field(model: Model, name: str) -> Field:
    try:
        return field_of(model, name)
    except KeyError:
        raise DomainError(repr(name)) from None


def sort_rows(model: Model, rows: list[Row], keys: list[tuple[str, bool, bool]],
              value: Callable[[Row, str], Any]) -> list[Row]:
    def cmp(a: Row, b: Row) -> int:
        for name, descending, nulls_first in keys:
            x, y = value(a, name), value(b, name)
            if x == y:
                continue
            if x is None or y is None:
                return (-1 if x is None else 1) * (1 if nulls_first else -1)
            result = -1 if x < y else 1
            return -result if descending else result
        return (a["id"] > b["id"]) - (a["id"] < b["id"])
    return sorted(rows, key=cmp_to_key(cmp))
