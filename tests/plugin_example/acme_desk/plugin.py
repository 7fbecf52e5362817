"""The `acme` connector type, registered in this package's entry points (group `tickethub.connectors`)."""

from __future__ import annotations

from typing import Literal

from acme_desk.connector import AcmeConnector, parse_notices
from hub.core.errors import UnknownSystem
from hub.core.plugin import ConnectorType, SystemSetup
from hub.core.ports import Connector
from hub.core.strict import StrictModel


class AcmeOptions(StrictModel):
    """Acme's own keys under [systems.<name>]."""

    region: Literal["eu", "us", "apac"] = "eu"


def build(setup: SystemSetup) -> Connector:
    if not setup.credential:
        raise UnknownSystem(f"system `{setup.system}` (acme) needs its API token: set credentials_env")
    return AcmeConnector(setup.system, setup.base_url, setup.credential, setup.client)


CONNECTOR_TYPE = ConnectorType(name="acme", build=build, parse_notice=parse_notices, options=AcmeOptions,
                               requires=("base_url", "credentials_env"),
                               schema=lambda _options: AcmeConnector.SCHEMA)
