"""The `tryton` connector type, as registered under the `tickethub.connectors` entry point group: one Tryton
model (sale.sale, production, stock.shipment.out) per system over JSON-RPC, polled (Tryton has no webhooks).

Its own keys in [systems.<name>]: `database` and `model`; it also needs `base_url`, `hub_author` (the login
the hub uses) and `credentials_env` (the variable holding that login's password)."""

from __future__ import annotations

from typing import Any

from pydantic import field_validator

from connectors.tryton.connector import TrytonConnector, parse_polled, schema_for
from connectors.tryton.models import MODELS
from hub.core.errors import UnknownSystem
from hub.core.plugin import ConnectorType, SystemSetup
from hub.core.ports import Connector, FieldSchema
from hub.core.strict import StrictModel


class TrytonOptions(StrictModel):
    database: str
    model: str  # sale.sale | production | stock.shipment.out

    @field_validator("model")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in MODELS:
            raise ValueError(f"tryton model `{value}` is not one tickethub maps; known: {', '.join(MODELS)}")
        return value


def build(setup: SystemSetup) -> Connector:
    if not setup.credential:
        raise UnknownSystem(f"system `{setup.system}` (tryton) needs the password of its user {setup.hub_author}: "
                            f"set credentials_env in [systems.{setup.system}] and that variable")
    options: TrytonOptions = setup.options
    assert setup.hub_author  # `requires` makes the settings name it
    return TrytonConnector(setup.system, setup.base_url, options.database, setup.hub_author, setup.credential,
                           options.model, setup.client)


def _schema(options: Any) -> dict[str, FieldSchema]:
    return dict(schema_for(options.model)) if options is not None else {}


CONNECTOR_TYPE = ConnectorType(name="tryton", build=build, parse_notice=parse_polled, options=TrytonOptions,
                               requires=("base_url", "hub_author", "credentials_env"), schema=_schema,
                               notices_carry_records=True, polled=True)
