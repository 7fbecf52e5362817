"""Read mapping files (TOML, one per system) and check them, alone and together.

Every problem names the file, the key and the fix; `check_mappings` collects all of them at once
so that `tickethub mappings check` can show the whole list, and `load_mappings` raises them.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Mapping
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from hub.core.canonical import FIELDS, normalize
from hub.core.errors import InvalidValue, MappingError, Problem
from hub.core.mapping import FieldMapping, MappingSet, SystemMapping
from hub.core.strict import StrictModel
from mappings import DEFAULT_DIR


class _SystemSection(StrictModel):
    rank: int = 0
    default_author_rank: int = 0
    reference_field: str | None = None


class _FieldSection(StrictModel):
    field: str
    direction: Literal["read", "write", "both"] = "both"
    owner: bool = False
    values: dict[str, str | bool | int] | None = None  # strings for enums; numbers/booleans for those fields
    accepts: list[str] | None = None
    date_format: str | None = None
    scale: Decimal | None = None
    max_length: int | None = None
    pattern: str | None = None
    minimum: Decimal | None = None
    maximum: Decimal | None = None
    # what reconciliation does when this system's copy of the field must change: write the winning value
    # back (repair), only report it, or wait for an operator (review)
    reconcile: Literal["repair", "report", "review"] = "repair"
    # canonical value = the system's value, for a text field the system takes as its own codes (many names
    # to one code, matched stripped and case-folded); writes only
    write_values: dict[str, str] | None = None


class _MappingFile(StrictModel):
    system: _SystemSection = _SystemSection()
    authors: dict[str, int] = {}
    fields: dict[str, _FieldSection] = {}


def check_mappings(directory: Path, systems: Mapping[str, str],
                   schemas: Mapping[str, Mapping[str, Any]] | None = None) -> tuple[MappingSet | None, list[Problem]]:
    """Load `systems` (system name -> mapping name) from `directory`; return the set and every problem.

    `schemas` (system -> its connector's declared fields) adds what the system accepts: a mapping that
    would write a field or an enum value the system does not have is a problem, and the system's
    limits (max length, enum values) become the mapping's, so apply refuses such values before sending.
    """
    problems: list[Problem] = []
    loaded: dict[str, SystemMapping] = {}
    for system, mapping_name in systems.items():
        mapping = _load_one(directory / f"{mapping_name}.toml", system, problems)
        schema = (schemas or {}).get(system)
        if mapping is not None and schema:
            mapping = _with_schema(mapping, schema, problems)
        if mapping is not None:
            loaded[system] = mapping
    mapping_set = MappingSet(loaded)
    problems.extend(_check_ownership(mapping_set))
    return (mapping_set if not problems else None), problems


def load_mappings(directory: Path, systems: Mapping[str, str],
                  schemas: Mapping[str, Mapping[str, Any]] | None = None) -> MappingSet:
    mapping_set, problems = check_mappings(directory, systems, schemas)
    if problems or mapping_set is None:
        raise MappingError(problems)
    return mapping_set


DEFAULT_ROLES = ("crm", "erp", "mes", "wms", "courier")


def default_systems(directory: Path = DEFAULT_DIR) -> dict[str, str]:
    """The five roles of the embedded default, each a system named after its mapping file."""
    return {role: role for role in DEFAULT_ROLES if (directory / f"{role}.toml").is_file()}


def _with_schema(mapping: SystemMapping, schema: Mapping[str, Any], problems: list[Problem]) -> SystemMapping | None:
    fields = dict(mapping.fields)
    before = len(problems)
    for name, fm in mapping.fields.items():
        declared = schema.get(fm.system_field)
        key = f"fields.{name}.field"
        if declared is None:
            problems.append(Problem(mapping.source, key, f"{mapping.system} has no field `{fm.system_field}`; it has "
                                    f"{', '.join(sorted(schema))}", "map the canonical field to one of those"))
            continue
        if not fm.writes:
            continue
        if not getattr(declared, "writable", True):
            problems.append(Problem(mapping.source, key, f"{mapping.system} does not let anyone write "
                                    f"`{fm.system_field}`", 'set direction = "read"'))
            continue
        changes: dict[str, Any] = {}
        refused_codes = sorted({code for _, code in fm.write_values
                                if declared.choices and code not in declared.choices})
        if refused_codes:
            problems.append(Problem(mapping.source, f"fields.{name}.write_values", f"{mapping.system} refuses "
                                    f"`{fm.system_field}` = {', '.join(refused_codes)}; it takes "
                                    f"{', '.join(declared.choices)}", "map those names to values it takes"))
        if declared.choices and not fm.write_values:
            writable = [v for v, _ in fm.values if not fm.accepts or v in fm.accepts]
            refused = [v for v in writable if v not in declared.choices]
            if refused:
                problems.append(Problem(mapping.source, f"fields.{name}.accepts", f"{mapping.system} refuses "
                                        f"`{fm.system_field}` = {', '.join(refused)}; it takes "
                                        f"{', '.join(declared.choices)}", "leave those out of `accepts`"))
            changes["accepts"] = tuple(v for v in writable if v in declared.choices)
        if declared.max_length is not None and (fm.max_length is None or fm.max_length > declared.max_length):
            changes["max_length"] = declared.max_length
        if changes:
            fields[name] = replace(fm, **changes)
    if len(problems) > before:
        return None
    return replace(mapping, fields=fields)


def _load_one(path: Path, system: str, problems: list[Problem]) -> SystemMapping | None:
    where = _display(path)
    if not path.is_file():
        problems.append(
            Problem(where, "mapping", f"system `{system}` names a mapping file that does not exist",
                    f"create {where} or point `mapping` of [systems.{system}] at an existing file")
        )
        return None
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        problems.append(Problem(where, "(syntax)", f"not valid TOML: {exc}", "fix the TOML syntax"))
        return None
    try:
        parsed = _MappingFile.model_validate(raw)
    except ValidationError as exc:
        for err in exc.errors():
            key = ".".join(str(part) for part in err["loc"])
            problems.append(Problem(where, key, err["msg"], _hint(err["type"], err["loc"])))
        return None

    before = len(problems)
    fields: dict[str, FieldMapping] = {}
    for name, section in parsed.fields.items():
        mapped = _field(where, name, section, problems)
        if mapped is not None:
            fields[name] = mapped
    if len(problems) > before:
        return None
    return SystemMapping(
        system=system,
        source=where,
        rank=parsed.system.rank,
        default_author_rank=parsed.system.default_author_rank,
        author_ranks=dict(parsed.authors),
        reference_field=parsed.system.reference_field,
        fields=fields,
    )


def _field(where: str, name: str, section: _FieldSection, problems: list[Problem]) -> FieldMapping | None:
    key = f"fields.{name}"
    spec = FIELDS.get(name)
    if spec is None:
        close = difflib.get_close_matches(name, FIELDS, n=1)
        fix = f"did you mean `{close[0]}`?" if close else f"use one of {', '.join(FIELDS)}"
        problems.append(Problem(where, key, f"`{name}` is not a canonical field", fix))
        return None
    start = len(problems)
    if section.owner and section.direction == "write":
        problems.append(
            Problem(where, f"{key}.owner", "an owner must be readable: the hub reads the owner's value",
                    'set direction = "read" or "both", or drop owner = true')
        )
    if spec.type == "enum":
        _check_enum(where, key, spec.choices, section, problems)
    elif section.values is not None and spec.type in ("integer", "boolean"):
        # a system state standing for a number or a flag (e.g. a production state for its progress)
        for system_value, canonical in section.values.items():
            try:
                normalize(name, canonical)
            except InvalidValue as exc:
                problems.append(Problem(where, f"{key}.values.{system_value}", str(exc),
                                        f"map it to a {spec.type} value"))
    elif section.values is not None or section.accepts is not None:
        problems.append(Problem(where, f"{key}.values", f"`{name}` is not an enum, integer or boolean field",
                                "remove `values`/`accepts`"))
    if section.date_format is not None and spec.type != "datetime":
        problems.append(Problem(where, f"{key}.date_format", f"`{name}` is not a date-time", "remove `date_format`"))
    if section.scale is not None and (spec.type not in ("decimal", "integer") or section.scale == 0):
        problems.append(Problem(where, f"{key}.scale", "scale needs a non-zero number on a numeric field",
                                "remove `scale` or set a non-zero number"))
    if section.write_values is not None:
        _check_write_values(where, key, spec.type, section, problems)
    if section.pattern is not None:
        try:
            re.compile(section.pattern)
        except re.error as exc:
            problems.append(Problem(where, f"{key}.pattern", f"not a regular expression: {exc}", "fix the pattern"))
    if len(problems) > start:
        return None
    return FieldMapping(
        canonical=name,
        system_field=section.field,
        direction=section.direction,
        owner=section.owner,
        values=tuple((section.values or {}).items()),
        accepts=tuple(section.accepts or ()),
        date_format=section.date_format,
        scale=section.scale,
        max_length=section.max_length,
        pattern=section.pattern,
        minimum=section.minimum,
        maximum=section.maximum,
        reconcile=section.reconcile,
        write_values=tuple((section.write_values or {}).items()),
    )


def _check_write_values(where: str, key: str, kind: str, section: _FieldSection, problems: list[Problem]) -> None:
    """A write_values table translates free text into the system's codes: only for text fields, only for
    writes (many names to one code cannot be read back), and one code per name however it is written."""
    table = section.write_values or {}
    at = f"{key}.write_values"
    if kind not in ("string", "text"):
        problems.append(Problem(where, at, f"write_values translates text, and this is a {kind} field",
                                "use `values` for an enum, or remove write_values"))
    if section.values is not None:
        problems.append(Problem(where, at, "a field has either `values` or `write_values`, not both",
                                "remove one of them"))
    if section.direction != "write":
        problems.append(Problem(where, at, "write_values is many-to-one, so a value read back could not be "
                                "translated back", 'set direction = "write"'))
    if not table:
        problems.append(Problem(where, at, "the table is empty", 'add e.g. "SF Express" = "shunfeng"'))
    seen: dict[str, tuple[str, str]] = {}
    for name, code in table.items():
        if not name.strip() or not code.strip():
            problems.append(Problem(where, f"{at}.{name}", "names and the system's values must not be blank",
                                    "give both"))
            continue
        folded = name.strip().casefold()
        if folded in seen and seen[folded][1] != code:
            first = seen[folded][0]
            problems.append(Problem(where, f"{at}.{name}", f"`{name}` and `{first}` are the same name (case and "
                                    f"spaces aside) but map to `{code}` and `{seen[folded][1]}`",
                                    "keep one of them"))
        seen.setdefault(folded, (name, code))


def _check_enum(where: str, key: str, choices: tuple[str, ...], section: _FieldSection,
                problems: list[Problem]) -> None:
    if not section.values:
        problems.append(
            Problem(where, f"{key}.values", "an enum field needs a `values` table: system value = canonical value",
                    f'add e.g. values = {{ "Open" = "{choices[0]}" }}')
        )
        return
    for system_value, canonical in section.values.items():
        if canonical not in choices:
            problems.append(
                Problem(where, f"{key}.values.{system_value}",
                        f"maps to `{canonical}`, which is not one of {', '.join(choices)}",
                        "map it to one of those")
            )
    for system_value in section.accepts or ():
        if system_value not in section.values:
            problems.append(
                Problem(where, f"{key}.accepts", f"the system's value `{system_value}` has no mapping",
                        f'add "{system_value}" = "<canonical value>" to `values`')
            )


def _check_ownership(mapping_set: MappingSet) -> list[Problem]:
    problems = []
    for name in mapping_set.mapped_fields():
        if mapping_set.owners(name):
            continue
        users = sorted(s for s, m in mapping_set.systems.items() if name in m.fields)
        sources = [mapping_set.systems[s].source for s in users]
        problems.append(
            Problem(", ".join(sources), f"fields.{name}.owner",
                    f"`{name}` is mapped by {', '.join(users)} but no system owns it",
                    "set owner = true in the mapping of the system that is its source of truth")
        )
    return problems


def _hint(error_type: str, loc: tuple[int | str, ...]) -> str:
    if error_type == "extra_forbidden":
        sections: dict[str, type[BaseModel]] = {"system": _SystemSection, "fields": _FieldSection}
        section = sections.get(str(loc[0]), _MappingFile) if loc else _MappingFile
        allowed = sorted(section.model_fields)
        return f"remove it; allowed keys here are {', '.join(allowed)}"
    if error_type == "missing":
        return "add it"
    return "correct the value"


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)
