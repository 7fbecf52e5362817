"""The Tryton connector's contract against the sandbox twin (offline)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from connectors.testing.tryton import Peer, TrytonContract
from connectors.tryton.connector import TrytonConnector
from connectors.tryton.rpc import TrytonSession
from connectors.tryton.twin import TrytonTwin

URL = "http://tryton.sandbox"


class TestTwin(TrytonContract):
    @pytest.fixture
    def peer(self) -> Iterator[Peer]:
        twin = TrytonTwin()
        twin.add_user("tickethub", "hub-password-1")
        twin.add_user("planner", "planner-password-1")
        product = twin.create("product.product", "admin", code="PUMP-100", name="Pump 100")
        [unit] = [u["id"] for u in twin.records("product.uom")]
        client = twin.http_client()

        def connector(model: str) -> TrytonConnector:
            system = {"production": "mes", "sale.sale": "erp", "stock.shipment.out": "wms"}[model]
            return TrytonConnector(system, URL, twin.database, "tickethub", "hub-password-1", model, client)

        yield Peer(connector, "tickethub", TrytonSession(client, URL, twin.database, "planner", "planner-password-1"),
                   "PUMP-100", product, unit,
                   TrytonConnector("mes", URL, twin.database, "tickethub", "not-the-password", "production", client))
        client.close()
