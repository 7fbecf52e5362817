"""Configuration: one `tickethub.toml` plus `TICKETHUB_*` environment overrides, read once, validated.

Where the file is: `--config`, else `TICKETHUB_CONFIG`, else `./tickethub.toml` if it exists, else the
embedded default (SQLite under ./var, the five default systems from the shipped mappings).
Secrets are never in the file: it names the environment variables that hold them.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from hub.core.alerts import AlertSettings
from hub.core.errors import ConfigError, Problem
from hub.core.plugin import ConnectorType
from hub.core.strict import StrictModel
from hub.core.ticket_ids import BUSINESS_CODE
from hub.mapping_files import DEFAULT_DIR, default_systems
from hub.registry import UnknownConnectorType, connector_type

DEFAULT_DATABASE_URL = "sqlite:///./var/tickethub.db"
SYSTEM_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
ENV_OVERRIDES = {  # environment variable -> key in [hub]
    "TICKETHUB_DATABASE_URL": "database_url",
    "TICKETHUB_BROKER_URL": "broker_url",
    "TICKETHUB_MAPPINGS_DIR": "mappings_dir",
    "TICKETHUB_BUSINESS_CODE": "business_code",
    "TICKETHUB_DATA_DIR": "data_dir",
}


class HubSettings(StrictModel):
    business_code: str = "SVC"
    clock_skew_seconds: float = Field(default=2.0, ge=0)
    api_token_env: str = "TICKETHUB_API_TOKEN"
    database_url: str = DEFAULT_DATABASE_URL
    # connections each hub process may hold (SQLAlchemy pool + overflow): api + workers + beat together must
    # stay under PostgreSQL's max_connections (100 by default)
    database_pool_size: int = Field(default=10, ge=1)
    database_max_overflow: int = Field(default=40, ge=0)
    broker_url: str | None = None  # none: the embedded broker (kombu's filesystem transport under data_dir)
    queue_prefix: str = ""  # several hubs can share one broker with different prefixes
    data_dir: Path = Path("./var")  # embedded broker, beat schedule, generated API token
    mappings_dir: Path = DEFAULT_DIR

    @field_validator("business_code")
    @classmethod
    def _code(cls, value: str) -> str:
        if not BUSINESS_CODE.match(value):
            raise ValueError("must be 2 to 6 capital letters, e.g. SVC")
        return value


class DeliverySettings(StrictModel):
    """How writes to systems are retried and paced."""

    backoff_base_seconds: float = Field(default=5.0, gt=0)  # first retry waits up to this (full jitter)
    backoff_cap_seconds: float = Field(default=3600.0, gt=0)  # no single wait is longer
    retry_horizon_seconds: float = Field(default=86400.0, gt=0)  # after this, a failing write is dead-lettered
    timeout_seconds: float = Field(default=10.0, gt=0)  # one HTTP call
    max_in_flight_per_system: int = Field(default=64, ge=1)  # a slow system cannot take every worker (README)
    lease_seconds: float = Field(default=120.0, gt=0)  # the last resort: an in-flight write older than this is retried
    heartbeat_seconds: float = Field(default=2.0, gt=0)  # how often a worker says it is alive
    worker_dead_after_seconds: float = Field(default=10.0, gt=0)  # a worker silent this long is dead: its writes
                                                                   # are taken back by the next sweep
    redispatch_after_seconds: float = Field(default=30.0, gt=0)  # unfinished work re-published by the sweeper
    sweep_interval_seconds: float = Field(default=10.0, gt=0)
    relay_interval_seconds: float = Field(default=0.2, gt=0)


class ReconcileSettings(StrictModel):
    """The nightly reconciliation (README "Reconciliation")."""

    enabled: bool = True  # beat schedules it under `tickethub up` and `tickethub beat`
    schedule: str = "0 2 * * *"  # cron: minute hour day-of-month month day-of-week
    timezone: str | None = None  # an IANA name such as "Asia/Shanghai"; none: the machine's local time
    full_on: str = "sun"  # the day of the week whose run is full; the other nights are incremental
    report_dir: Path | None = None  # where each run's report files go; default: data_dir/reports
    chunk_tickets: int = Field(default=500, ge=1, le=100_000)  # tickets per compare part (a Celery task)

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        if len(value.split()) != 5:
            raise ValueError("a cron expression has five fields: minute hour day-of-month month day-of-week,"
                             " e.g. \"0 2 * * *\" for 02:00 every day")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is not None:
            from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"`{value}` is not a time zone name (e.g. Asia/Shanghai, Europe/Berlin)") from None
        return value


class WorkflowSettings(StrictModel):
    """The status workflow (README "Status workflow"): a file beside the mappings."""

    enabled: bool = True
    # a file in mappings_dir, without .toml; none: `workflow` if that file exists there, else no workflow
    file: str | None = None
    dwell_check_seconds: float = Field(default=60.0, gt=0)  # how often beat looks for tickets past a dwell limit


class SystemSettings(BaseModel):
    """One `[systems.<name>]` table: the keys every system has, plus its connector type's own (e.g. a tryton
    system's `database` and `model`), which the type's `options` model validates (`check_system`)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    type: str = "generic"  # connector type: a `tickethub.connectors` entry point (generic, bottlecrm, tryton, ...)
    base_url: str | None = None
    mapping: str | None = None  # a file in mappings_dir, without .toml; default: the system's name
    origin: bool = False
    credentials_env: str | None = None
    webhook_secrets_env: str | None = None
    max_in_flight: int | None = Field(default=None, ge=1)  # overrides [delivery] max_in_flight_per_system
    hub_author: str | None = None  # the user the hub writes as in this system: its changes are echoes
    poll_interval_seconds: float = Field(default=30.0, gt=0)  # polled systems: how often
    poll_overlap_seconds: float = Field(default=60.0, ge=0)  # each poll re-reads this far behind its watermark
    record_url: str | None = None  # the console links a record here: "https://crm.example.com/cases/{local_id}"

    @field_validator("type")
    @classmethod
    def _type(cls, value: str) -> str:
        try:
            connector_type(value)
        except UnknownConnectorType as exc:
            raise ValueError(str(exc)) from None
        return value

    @property
    def connector_type(self) -> ConnectorType:
        return connector_type(self.type)

    @property
    def polled(self) -> bool:
        return self.connector_type.polled

    @cached_property
    def options(self) -> Any:
        """The connector type's own keys, validated by its `options` model."""
        return self.connector_type.validate_options(self.model_extra or {})


def check_system(where: str, name: str, system: SystemSettings) -> list[Problem]:
    """What is wrong with a system's keys for its connector type: keys it requires, and its own keys."""
    declared = system.connector_type
    problems = []
    missing = [key for key in declared.requires if not getattr(system, key)]
    if missing:
        problems.append(Problem(where, f"systems.{name}", f"a {declared.name} system needs {', '.join(missing)}",
                                f"set {', '.join(missing)} under [systems.{name}]"))
    extra = system.model_extra or {}
    if declared.options is None:
        problems += [Problem(where, f"systems.{name}.{key}", "Extra inputs are not permitted",
                             _fix("extra_forbidden", ("systems", name, key), declared))
                     for key in extra]
        return problems
    try:
        system.options  # noqa: B018 (validates and keeps them)
    except ValidationError as exc:
        problems += [Problem(where, ".".join(str(p) for p in ("systems", name, *err["loc"])),
                             err["msg"].removeprefix("Value error, "),
                             _fix(err["type"], ("systems", name, *err["loc"]), declared))
                     for err in exc.errors()]
    return problems


class ConsoleUser(StrictModel):
    """A named console account: its role, and how it proves who it is (a password hash, or a token kept in
    an environment variable)."""

    role: Literal["viewer", "operator"] = "viewer"  # only operators decide flagged items or replay dead letters
    password_hash: str | None = None  # pbkdf2_sha256$<iterations>$<salt>$<hash>: `tickethub console hash-password`
    token_env: str | None = None  # or: the environment variable holding this user's token


class ConsoleSettings(StrictModel):
    """The operator console under /console (README "Operator console")."""

    enabled: bool = True
    # signs the session cookies (every API process must share it); unset: derived from the API token
    session_secret_env: str = "TICKETHUB_CONSOLE_SECRET"
    session_hours: float = Field(default=12.0, gt=0)
    users: dict[str, ConsoleUser] = {}
    # the API token also logs in, as an operator under the name typed with it
    api_token_login: bool = True
    # single sign-on: a reverse proxy that authenticated the user names them in this header
    trusted_user_header: str | None = None  # e.g. "X-Forwarded-User"
    trusted_proxies: list[str] = ["127.0.0.1", "::1"]  # the header counts only from these addresses
    sso_role: Literal["viewer", "operator"] = "viewer"  # an SSO user not listed under users
    page_size: int = Field(default=100, ge=10, le=1000)


class Settings(StrictModel):
    hub: HubSettings = HubSettings()
    delivery: DeliverySettings = DeliverySettings()
    reconcile: ReconcileSettings = ReconcileSettings()
    workflow: WorkflowSettings = WorkflowSettings()
    alerts: AlertSettings = AlertSettings()
    console: ConsoleSettings = ConsoleSettings()
    systems: dict[str, SystemSettings] = {}
    source: str = "(embedded default)"

    def mapping_names(self) -> dict[str, str]:
        return {name: s.mapping or name for name, s in self.systems.items()}

    def workflow_path(self) -> Path | None:
        """The workflow file to load, or None when there is no workflow."""
        if not self.workflow.enabled:
            return None
        path = self.hub.mappings_dir / f"{self.workflow.file or 'workflow'}.toml"
        return path if self.workflow.file or path.is_file() else None

    def api_token(self, environ: Mapping[str, str] | None = None) -> str | None:
        return (os.environ if environ is None else environ).get(self.hub.api_token_env) or None


def find_config(explicit: Path | None, environ: Mapping[str, str]) -> Path | None:
    if explicit is not None:
        return explicit
    if environ.get("TICKETHUB_CONFIG"):
        return Path(environ["TICKETHUB_CONFIG"])
    local = Path("tickethub.toml")
    return local if local.is_file() else None


def load_settings(path: Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the configuration; raise ConfigError naming the file, the key and the fix."""
    environ = os.environ if environ is None else environ
    path = find_config(path, environ)
    where = str(path) if path else "(embedded default)"
    raw: dict[str, Any] = {}
    if path is not None:
        if not path.is_file():
            raise ConfigError([Problem(where, "(file)", "the configuration file does not exist",
                                       "create it or pass the right --config / TICKETHUB_CONFIG")])
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError([Problem(where, "(syntax)", f"not valid TOML: {exc}", "fix the TOML syntax")]) from exc

    hub_section = dict(raw.get("hub", {})) if isinstance(raw.get("hub", {}), dict) else raw.get("hub")
    if isinstance(hub_section, dict):
        for variable, key in ENV_OVERRIDES.items():
            if environ.get(variable):
                hub_section[key] = environ[variable]
        relative = "mappings_dir" in hub_section and not os.path.isabs(hub_section["mappings_dir"])
        if path is not None and relative and not environ.get("TICKETHUB_MAPPINGS_DIR"):
            hub_section["mappings_dir"] = str(path.parent / hub_section["mappings_dir"])
        raw["hub"] = hub_section
    if "systems" not in raw:
        raw["systems"] = {name: {"origin": name == "crm"} for name in default_systems()}

    try:
        settings = Settings.model_validate({**raw, "source": where})
    except ValidationError as exc:
        problems = [
            Problem(where, ".".join(str(p) for p in err["loc"]), err["msg"].removeprefix("Value error, "),
                    _fix(err["type"], err["loc"]))
            for err in exc.errors()
        ]
        systems = raw.get("systems")
        for name, table in (systems.items() if isinstance(systems, dict) else ()):
            try:  # its own keys too, so that one run names every problem
                problems += check_system(where, name, SystemSettings.model_validate(table))
            except (ValidationError, TypeError):
                continue  # reported above
        raise ConfigError(problems) from exc

    problems = []
    for name, system in settings.systems.items():
        problems += check_system(where, name, system)
        if not SYSTEM_NAME.match(name):
            problems.append(Problem(where, f"systems.{name}", "a system name must be lower-case letters, digits,"
                                    " - or _, starting with a letter", "rename the [systems.<name>] table"))
    if not any(s.origin for s in settings.systems.values()):
        problems.append(Problem(where, "systems", "no system is a ticket origin, so no ticket can ever be created",
                                "set origin = true on the system that opens tickets (usually the CRM)"))
    if problems:
        raise ConfigError(problems)
    return settings


def _fix(error_type: str, loc: tuple[int | str, ...], declared: ConnectorType | None = None) -> str:
    if error_type == "extra_forbidden":
        if loc and loc[0] not in ("hub", "systems", "delivery", "reconcile", "workflow", "alerts"):
            return ("remove it; the file has [hub], [delivery], [reconcile], [workflow], [alerts] and"
                    " [systems.<name>] tables")
        sections: dict[str, type[BaseModel]] = {"hub": HubSettings, "delivery": DeliverySettings,
                                                 "reconcile": ReconcileSettings, "workflow": WorkflowSettings,
                                                 "alerts": AlertSettings}
        allowed = list(sections.get(str(loc[0]), SystemSettings).model_fields)
        if declared is not None and declared.options is not None:
            allowed += list(declared.options.model_fields)  # type: ignore[attr-defined]
        extra = " (system and author ranks live in the system's mapping file)" if loc[-1] == "rank" else ""
        return f"remove it; allowed keys are {', '.join(sorted(allowed))}{extra}"
    return "correct the value"
