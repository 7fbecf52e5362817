"""Mappings in memory: per system, canonical field <-> system field, transforms, direction, ownership.

Pure: the loader (`hub.mapping_files`) reads files and builds these; nothing here does I/O.
Translation is two-way: `to_canonical` for what a system reports, `to_system` for what the hub would
write there. `to_system` also enforces what the target declares it accepts, so a value the target
would refuse is caught before anything is sent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from hub.core.canonical import FIELDS, JsonScalar, format_datetime, normalize, parse_datetime
from hub.core.errors import InvalidValue

Direction = Literal["read", "write", "both"]


@dataclass(frozen=True)
class FieldMapping:
    canonical: str
    system_field: str
    direction: Direction
    owner: bool = False
    values: tuple[tuple[str, JsonScalar], ...] = ()  # (system value, canonical value), in file order
    accepts: tuple[str, ...] = ()  # the system's own enum values it accepts; empty: every mapped one
    date_format: str | None = None  # iso (default) | unix | unix_ms | a strftime pattern (naive = UTC)
    scale: Decimal | None = None  # system value = canonical value x scale (e.g. 100 for cents)
    max_length: int | None = None
    pattern: str | None = None
    minimum: Decimal | None = None
    maximum: Decimal | None = None
    reconcile: Literal["repair", "report", "review"] = "repair"  # when this copy must change (reconciliation)
    # (canonical value, system value), many-to-one, for a text field written as the system's own codes (e.g.
    # carrier names -> a courier API's company codes): matched stripped and case-folded; any other value is
    # refused before sending. Writes only: many-to-one cannot be read back.
    write_values: tuple[tuple[str, str], ...] = ()

    @property
    def reads(self) -> bool:
        """The hub reads this field from the system (the system can be its source)."""
        return self.direction in ("read", "both")

    @property
    def writes(self) -> bool:
        """The hub writes this field to the system (the system subscribes to it)."""
        return self.direction in ("write", "both")

    def to_canonical(self, raw: Any) -> JsonScalar:
        if raw is None:
            return None
        if self.values:
            table = dict(self.values)
            if not isinstance(raw, str) or raw not in table:  # a state, never a number or a flag
                raise InvalidValue(
                    f"`{self.system_field}` = `{raw}` has no mapping to `{self.canonical}`;"
                    f" mapped values are {', '.join(table)}"
                )
            raw = table[raw]
        elif FIELDS[self.canonical].type == "datetime":
            raw = self._parse_date(raw)
        elif self.scale is not None:
            scaled = _scaled(raw, self.system_field) / self.scale
            if FIELDS[self.canonical].type == "decimal":
                raw = format(scaled.normalize(), "f")
            elif scaled != scaled.to_integral_value():
                raise InvalidValue(
                    f"`{self.system_field}` = `{raw}` divided by scale {self.scale} is not a whole number"
                )
            else:
                raw = int(scaled)
        return normalize(self.canonical, raw)

    def to_system(self, value: JsonScalar, system: str) -> JsonScalar:
        """The value as `system` would store it; InvalidValue if the system would refuse it."""
        if value is None:
            return None
        out: JsonScalar
        if self.write_values:
            out = self._write_value(value, system)
        elif self.values:
            out = next((sys_value for sys_value, canon in self.values
                        if canon == value and (not self.accepts or sys_value in self.accepts)), None)
            if out is None:
                accepted = sorted({str(canon) for sys_value, canon in self.values
                                   if not self.accepts or sys_value in self.accepts})
                raise InvalidValue(
                    f"{system} does not accept `{self.canonical}` = `{value}` (its field `{self.system_field}`"
                    f" takes {', '.join(accepted)})"
                )
        elif FIELDS[self.canonical].type == "datetime":
            out = self._format_date(str(value))
        elif self.scale is not None:
            scaled = Decimal(str(value)) * self.scale
            out = int(scaled) if scaled == scaled.to_integral_value() else format(scaled.normalize(), "f")
        else:
            out = value
        self._check_accepts(out, system)
        return out

    def _write_value(self, value: JsonScalar, system: str) -> str:
        """The system's code for a name, however it is cased or spaced; a name not in the table is refused
        here, before sending, since the system would refuse it (or worse, take it for another code)."""
        wanted = str(value).strip().casefold()
        for name, system_value in self.write_values:
            if name.strip().casefold() == wanted:
                return system_value
        names: dict[str, str] = {}  # one spelling per name, as the file first gives it
        for name, _ in self.write_values:
            names.setdefault(name.strip().casefold(), name.strip())
        accepted = ", ".join(sorted(names.values(), key=str.casefold))
        raise InvalidValue(f"{system} does not accept `{self.canonical}` = `{value}` (its field `{self.system_field}`"
                           f" takes one of {accepted}; add the name to `write_values` in its mapping)")

    def _check_accepts(self, out: JsonScalar, system: str) -> None:
        where = f"{system} field `{self.system_field}`"
        if isinstance(out, str):
            if self.max_length is not None and len(out) > self.max_length:
                raise InvalidValue(f"{where} takes at most {self.max_length} characters, got {len(out)}")
            if self.pattern is not None and not re.fullmatch(self.pattern, out):
                raise InvalidValue(f"{where} refuses `{out}`: it must match {self.pattern}")
        if isinstance(out, (int, str)) and not isinstance(out, bool) and (
            self.minimum is not None or self.maximum is not None
        ):
            number = _scaled(out, self.system_field)
            if self.minimum is not None and number < self.minimum:
                raise InvalidValue(f"{where} refuses {out}: below its minimum {self.minimum}")
            if self.maximum is not None and number > self.maximum:
                raise InvalidValue(f"{where} refuses {out}: above its maximum {self.maximum}")

    def _parse_date(self, raw: Any) -> str:
        fmt = self.date_format or "iso"
        try:
            if fmt in ("unix", "unix_ms"):
                seconds = float(raw) / (1000 if fmt == "unix_ms" else 1)
                return format_datetime(datetime.fromtimestamp(seconds, UTC))
            if fmt == "iso":
                text = str(raw)
                if "T" in text and not re.search(r"(Z|[+-]\d\d:?\d\d)$", text):
                    text += "Z"  # the system speaks naive UTC
                return format_datetime(parse_datetime(text))
            parsed = datetime.strptime(str(raw), fmt)
            return format_datetime(parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC))
        except (ValueError, TypeError, OverflowError, OSError, InvalidValue) as exc:
            raise InvalidValue(f"`{self.system_field}` = `{raw}` is not a date-time in format {fmt}") from exc

    def _format_date(self, value: str) -> JsonScalar:
        moment = parse_datetime(value)
        fmt = self.date_format or "iso"
        if fmt == "unix":
            return int(moment.timestamp())
        if fmt == "unix_ms":
            return round(moment.timestamp() * 1000)
        if fmt == "iso":
            return format_datetime(moment)
        return moment.strftime(fmt)


@dataclass(frozen=True)
class SystemMapping:
    system: str
    source: str  # the file it came from, for messages
    rank: int = 0
    default_author_rank: int = 0
    author_ranks: Mapping[str, int] = field(default_factory=dict)
    reference_field: str | None = None
    fields: Mapping[str, FieldMapping] = field(default_factory=dict)

    def author_rank(self, author: str) -> int:
        return self.author_ranks.get(author, self.default_author_rank)


@dataclass(frozen=True)
class MappingSet:
    """Every configured system's mapping, and the ownership and subscriptions they add up to."""

    systems: Mapping[str, SystemMapping]

    def owners(self, field_name: str) -> frozenset[str]:
        return frozenset(
            name for name, m in self.systems.items() if (f := m.fields.get(field_name)) and f.owner
        )

    def subscribers(self, field_name: str) -> list[str]:
        return sorted(name for name, m in self.systems.items() if (f := m.fields.get(field_name)) and f.writes)

    def mapped_fields(self) -> list[str]:
        present = {name for m in self.systems.values() for name in m.fields}
        return [name for name in FIELDS if name in present]

    def matrix(self) -> dict[str, dict[str, str]]:
        """field -> system -> cell: `owner`, `read`, `write`, `both`, or '' where unmapped."""
        cells: dict[str, dict[str, str]] = {}
        for name in self.mapped_fields():
            row = {}
            for system, mapping in self.systems.items():
                fm = mapping.fields.get(name)
                row[system] = "" if fm is None else ("owner+" + fm.direction if fm.owner else fm.direction)
            cells[name] = row
        return cells


def lookup_path(record: Mapping[str, Any], path: str) -> tuple[bool, Any]:
    """(found, value) of a field in a system record: a key as given, or a dotted path into nested objects."""
    node: Any = record
    if path in record:
        return True, record[path]
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _scaled(raw: Any, name: str) -> Decimal:
    try:
        number = Decimal(str(raw))
    except (InvalidOperation, ValueError) as exc:
        raise InvalidValue(f"`{name}` = `{raw}` is not a number") from exc
    if isinstance(raw, bool) or not number.is_finite():
        raise InvalidValue(f"`{name}` = `{raw}` is not a finite number")
    return number
