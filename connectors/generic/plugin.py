"""The `generic` connector type, as registered under the `tickethub.connectors` entry point group: a system
that POSTs Standard-Webhooks-signed notices carrying whole records, and receives signed writes at its URL."""

from __future__ import annotations

from connectors.generic.connector import GenericConnector
from connectors.generic.notice import parse_notices
from hub.core.errors import UnknownSystem
from hub.core.plugin import ConnectorType, SystemSetup
from hub.core.ports import Connector


def build(setup: SystemSetup) -> Connector:
    if not setup.webhook_secrets:  # receivers must be able to tell the hub's writes from anyone else's
        raise UnknownSystem(f"system `{setup.system}` has no webhook secret to sign deliveries with: set "
                            f"webhook_secrets_env in [systems.{setup.system}] and that variable")
    return GenericConnector(setup.system, setup.base_url, setup.webhook_secrets[0], setup.client)


CONNECTOR_TYPE = ConnectorType(name="generic", build=build, parse_notice=parse_notices, notices_carry_records=True)
