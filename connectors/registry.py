"""Build the connector for a configured system from its type."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import httpx

from connectors.base import Connector
from hub.config import Settings
from hub.errors import UnknownSystem


def build_connector(system: str, settings: Settings, secrets: Mapping[str, Sequence[str]],
                    client: httpx.Client) -> Connector:
    config = settings.systems.get(system)
    if config is None:
        raise UnknownSystem(f"no system `{system}` is configured")
    if config.type == "generic":
        from connectors.generic.connector import GenericConnector

        if not config.base_url:
            raise UnknownSystem(f"system `{system}` has no base_url to deliver to")
        signing = list(secrets.get(system, ()))
        if not signing:  # receivers must be able to tell the hub's writes from anyone else's
            raise UnknownSystem(f"system `{system}` has no webhook secret to sign deliveries with: set "
                                f"webhook_secrets_env in [systems.{system}] and that variable")
        return GenericConnector(system, config.base_url, signing[0], client)
    raise UnknownSystem(f"system `{system}` has connector type `{config.type}`, which cannot write yet")
