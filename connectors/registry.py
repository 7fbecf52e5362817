"""Build the connector for a configured system from its type."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from hub.config import Settings
from hub.core.errors import UnknownSystem
from hub.core.ports import Connector


def load_credentials(settings: Settings, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Each system's API credential, read once from the variable its `credentials_env` names."""
    environ = os.environ if environ is None else environ
    return {name: environ[s.credentials_env] for name, s in settings.systems.items()
            if s.credentials_env and environ.get(s.credentials_env)}


def connector_schemas(settings: Settings) -> dict[str, Mapping[str, Any]]:
    """What each configured system declares it accepts (from its connector type; no I/O)."""
    schemas: dict[str, Mapping[str, Any]] = {}
    for name, config in settings.systems.items():
        if config.type == "bottlecrm":
            from connectors.bottlecrm.connector import BottleCRMConnector

            schemas[name] = BottleCRMConnector.SCHEMA
        elif config.type == "tryton" and config.model:
            from connectors.tryton.connector import MODELS, schema_for

            if config.model in MODELS:
                schemas[name] = schema_for(config.model)
    return schemas


def build_connector(system: str, settings: Settings, secrets: Mapping[str, Sequence[str]],
                    client: httpx.Client, credentials: Mapping[str, str] | None = None) -> Connector:
    config = settings.systems.get(system)
    if config is None:
        raise UnknownSystem(f"no system `{system}` is configured")
    if not config.base_url:
        raise UnknownSystem(f"system `{system}` has no base_url to deliver to")
    if config.type == "generic":
        from connectors.generic.connector import GenericConnector

        signing = list(secrets.get(system, ()))
        if not signing:  # receivers must be able to tell the hub's writes from anyone else's
            raise UnknownSystem(f"system `{system}` has no webhook secret to sign deliveries with: set "
                                f"webhook_secrets_env in [systems.{system}] and that variable")
        return GenericConnector(system, config.base_url, signing[0], client)
    if config.type == "bottlecrm":
        from connectors.bottlecrm.connector import BottleCRMConnector

        token = (credentials or {}).get(system)
        if not token:
            raise UnknownSystem(f"system `{system}` (bottlecrm) needs its personal access token: set "
                                f"credentials_env in [systems.{system}] and that variable")
        return BottleCRMConnector(system, config.base_url, token, client)
    if config.type == "tryton":
        from connectors.tryton.connector import TrytonConnector

        password = (credentials or {}).get(system)
        if not password:
            raise UnknownSystem(f"system `{system}` (tryton) needs the password of its user {config.hub_author}: "
                                f"set credentials_env in [systems.{system}] and that variable")
        assert config.database and config.model and config.hub_author  # checked when the settings were read
        return TrytonConnector(system, config.base_url, config.database, config.hub_author, password,
                               config.model, client)
    raise UnknownSystem(f"system `{system}` has connector type `{config.type}`, which tickethub does not know")
