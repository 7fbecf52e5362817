"""Read the status workflow file (TOML, beside the mappings) and check it against the configured systems.

    [workflow]
    initial = "new"

    [states.shipped]
    from = ["ready_to_ship", "in_production"]     # the states it may be entered from; "*" = any non-final
    by = ["wms"]                                  # the systems that may report it
    evidence = [{ field = "shipment.waybill", from = "wms" }]
    dwell = "5d"                                  # an alert past this ...
    escalate = "10d"                              # ... and one escalation past this

    [states.closed]
    from = ["resolved"]
    by = ["crm"]
    final = true

Evidence: `field` (canonical), `from` (the system that must have reported it; any owner when left out),
`equals` (the value it must have had; any non-empty value when left out), `fresh` (before accepting, ask
that system again when its last word on the field is older than this). Durations are seconds or a number
with a unit: `90s`, `30m`, `4h`, `2d`, `1h30m`. Every problem names the file, the key and the fix, as the
mapping files' do.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from pathlib import Path

from pydantic import Field, ValidationError, field_validator

from hub.core.canonical import FIELDS, JsonScalar, normalize
from hub.core.errors import InvalidValue, MappingError, Problem
from hub.core.strict import StrictModel
from hub.core.workflow import Evidence, StateRule, Workflow, problems

_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)d)?(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?$")


def parse_duration(value: str | float | int) -> float:
    """Seconds from `90`, `90s`, `30m`, `4h`, `2d` or `1h30m`; ValueError saying what is accepted."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or text such as 30m, 4h, 2d")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        match = _DURATION.match(value.strip().lower().replace(" ", ""))
        if not value.strip() or match is None or not any(match.groups()):
            raise ValueError(f"`{value}` is not a duration; write seconds or e.g. 90s, 30m, 4h, 2d, 1h30m")
        d, h, m, s = (float(g) if g else 0.0 for g in match.groups())
        seconds = d * 86400 + h * 3600 + m * 60 + s
    if seconds <= 0:
        raise ValueError("a duration must be longer than zero")
    return seconds


class _EvidenceSection(StrictModel):
    field: str
    source: str | None = Field(default=None, alias="from")
    equals: str | bool | int | None = None
    fresh: str | float | None = None

    @field_validator("fresh")
    @classmethod
    def _fresh(cls, value: str | float | None) -> float | None:
        return None if value is None else parse_duration(value)


class _StateSection(StrictModel):
    sources: list[str] = Field(default=[], alias="from")
    by: list[str] = []
    evidence: list[_EvidenceSection] = []
    final: bool = False
    dwell: str | float | None = None
    escalate: str | float | None = None

    @field_validator("dwell", "escalate")
    @classmethod
    def _duration(cls, value: str | float | None) -> float | None:
        return None if value is None else parse_duration(value)


class _WorkflowSection(StrictModel):
    initial: str = "new"


class _WorkflowFile(StrictModel):
    workflow: _WorkflowSection = _WorkflowSection()
    states: dict[str, _StateSection] = {}


def check_workflow(path: Path, systems: Sequence[str], skew_seconds: float = 0.0
                   ) -> tuple[Workflow | None, list[Problem]]:
    """The workflow in `path`, checked against the configured `systems`; (None, problems) if anything is wrong."""
    where = _display(path)
    if not path.is_file():
        return None, [Problem(where, "(file)", "the workflow file does not exist",
                              "create it, or set [workflow] enabled = false")]
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        return None, [Problem(where, "(syntax)", f"not valid TOML: {exc}", "fix the TOML syntax")]
    try:
        parsed = _WorkflowFile.model_validate(raw)
    except ValidationError as exc:
        return None, [Problem(where, ".".join(str(p) for p in err["loc"]), err["msg"].removeprefix("Value error, "),
                              "see the comments at the top of the shipped mappings/workflow.toml")
                      for err in exc.errors()]
    found: list[Problem] = []
    states = {}
    for name, section in parsed.states.items():
        evidence = []
        for i, e in enumerate(section.evidence):
            equals: JsonScalar = e.equals
            if equals is not None and e.field in FIELDS:
                try:
                    equals = normalize(e.field, equals)
                except InvalidValue as exc:
                    found.append(Problem(where, f"states.{name}.evidence[{i}].equals", str(exc),
                                         "give a value the field can hold"))
            evidence.append(Evidence(e.field, e.source, equals, e.fresh))  # type: ignore[arg-type]
        states[name] = StateRule(name, tuple(section.sources), tuple(section.by), tuple(evidence), section.final,
                                 section.dwell, section.escalate)  # type: ignore[arg-type]
    workflow = Workflow(parsed.workflow.initial, states, where, skew_seconds)
    found += [Problem(where, key, problem, fix) for key, problem, fix in problems(workflow, list(systems))]
    return (None if found else workflow), found


def load_workflow(path: Path, systems: Sequence[str], skew_seconds: float = 0.0) -> Workflow:
    workflow, found = check_workflow(path, systems, skew_seconds)
    if found or workflow is None:
        raise MappingError(found)
    return workflow


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)
