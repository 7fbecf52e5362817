"""The `bottlecrm` connector type, as registered under the `tickethub.connectors` entry point group: BottleCRM
cases are tickets; webhooks signed with BottleCRM's own scheme name what changed, and the case is read back."""

from __future__ import annotations

from typing import Any

from connectors.bottlecrm.connector import BottleCRMConnector
from connectors.bottlecrm.signing import BOTTLECRM_SCHEME
from hub.core.errors import UnknownSystem
from hub.core.plugin import ConnectorType, SystemSetup
from hub.core.ports import Connector, Notice


def build(setup: SystemSetup) -> Connector:
    if not setup.credential:
        raise UnknownSystem(f"system `{setup.system}` (bottlecrm) needs its personal access token: set "
                            f"credentials_env in [systems.{setup.system}] and that variable")
    return BottleCRMConnector(setup.system, setup.base_url, setup.credential, setup.client)


def parse_notices(_system: str, payload: Any) -> list[Notice]:
    return BottleCRMConnector.parse_notice({}, payload)


CONNECTOR_TYPE = ConnectorType(name="bottlecrm", build=build, parse_notice=parse_notices,
                               signature=BOTTLECRM_SCHEME, schema=lambda _options: BottleCRMConnector.SCHEMA)
