"""The configured systems' connectors, built through their connector types (`hub.registry`): what each
system accepts, its credentials and webhook secrets (read once from the environment), and the connector."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from hub.config import Settings
from hub.core.errors import ConfigError, Problem, UnknownSystem
from hub.core.plugin import SystemSetup
from hub.core.ports import Connector, FieldSchema

_SECRET_SEPARATORS = re.compile(r"[\s,]+")


def load_credentials(settings: Settings, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Each system's API credential, read once from the variable its `credentials_env` names."""
    environ = os.environ if environ is None else environ
    return {name: environ[s.credentials_env] for name, s in settings.systems.items()
            if s.credentials_env and environ.get(s.credentials_env)}


def connector_schemas(settings: Settings) -> dict[str, Mapping[str, FieldSchema]]:
    """What each configured system declares it accepts (from its connector type; no I/O)."""
    schemas: dict[str, Mapping[str, Any]] = {}
    for name, config in settings.systems.items():
        try:
            schema = config.connector_type.schema(config.options)
        except ValueError:  # options that do not validate are reported by the configuration check
            continue
        if schema:
            schemas[name] = schema
    return schemas


def build_connector(system: str, settings: Settings, secrets: Mapping[str, Sequence[str]],
                    client: httpx.Client, credentials: Mapping[str, str] | None = None) -> Connector:
    config = settings.systems.get(system)
    if config is None:
        raise UnknownSystem(f"no system `{system}` is configured")
    if not config.base_url:
        raise UnknownSystem(f"system `{system}` has no base_url to deliver to")
    return config.connector_type.build(SystemSetup(
        system=system, base_url=config.base_url, options=config.options, hub_author=config.hub_author,
        credential=(credentials or {}).get(system), webhook_secrets=tuple(secrets.get(system, ())), client=client))


def load_webhook_secrets(settings: Settings, environ: Mapping[str, str]) -> dict[str, list[str]]:
    """Each system's active webhook secrets, read once from the variable its `webhook_secrets_env` names
    (several separated by whitespace or commas). Raise ConfigError for a secret that cannot be a key of its
    type's signature scheme."""
    secrets: dict[str, list[str]] = {}
    problems = []
    for name, system in settings.systems.items():
        variable = system.webhook_secrets_env
        values = [s for s in _SECRET_SEPARATORS.split(environ.get(variable, "")) if s] if variable else []
        for position, secret in enumerate(values, start=1):
            try:
                system.connector_type.signature.key(secret)
            except ValueError as exc:
                problems.append(Problem(settings.source, f"systems.{name}.webhook_secrets_env",
                                        f"secret {position} in ${variable}: {exc}",
                                        "give whsec_<base64> or a plain secret"))
        secrets[name] = values
    if problems:
        raise ConfigError(problems)
    return secrets
