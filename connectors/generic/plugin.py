"""The `generic` connector type, as registered under the `tickethub.connectors` entry point group: a system
that POSTs Standard-Webhooks-signed notices carrying whole records, and receives signed writes at its URL."""

from __future__ import annotations

from pydantic import Field

from connectors.generic.connector import GenericConnector
from connectors.generic.notice import parse_notices
from hub.core.errors import UnknownSystem
from hub.core.plugin import ConnectorType, SystemSetup
from hub.core.ports import Connector
from hub.core.strict import StrictModel


class GenericOptions(StrictModel):
    """The generic type's own keys: where the system's bulk export is (README "Reconciliation")."""

    export_url: str | None = None  # GET {export_url}?cursor=&limit=&since=, bearer token from credentials_env
    export_page_size: int = Field(default=500, ge=1, le=10_000)


def build(setup: SystemSetup) -> Connector:
    if not setup.webhook_secrets:  # receivers must be able to tell the hub's writes from anyone else's
        raise UnknownSystem(f"system `{setup.system}` has no webhook secret to sign deliveries with: set "
                            f"webhook_secrets_env in [systems.{setup.system}] and that variable")
    options: GenericOptions = setup.options or GenericOptions()
    return GenericConnector(setup.system, setup.base_url, setup.webhook_secrets[0], setup.client,
                            options.export_url, setup.credential, options.export_page_size)


CONNECTOR_TYPE = ConnectorType(name="generic", build=build, parse_notice=parse_notices, options=GenericOptions,
                               notices_carry_records=True)
