"""The Tryton connector's contract against a real Tryton 8.2 (trytond on loopback)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from connectors.testing.tryton import Peer, TrytonContract
from connectors.tryton.connector import TrytonConnector
from connectors.tryton.rpc import TrytonSession
from tests.peers.tryton import Tryton

pytestmark = pytest.mark.peer


class TestRealTryton(TrytonContract):
    @pytest.fixture
    def peer(self, tryton: Tryton) -> Iterator[Peer]:
        client = httpx.Client(timeout=30)

        def connector(model: str) -> TrytonConnector:
            system = {"production": "mes", "sale.sale": "erp", "stock.shipment.out": "wms"}[model]
            return TrytonConnector(system, tryton.url, tryton.database, "tickethub", tryton.users["tickethub"],
                                   model, client)

        yield Peer(connector, "tickethub", TrytonSession(client, tryton.url, tryton.database, "planner",
                                                         tryton.users["planner"]),
                   "PUMP-100", tryton.ids["pump"], tryton.ids["unit"],
                   TrytonConnector("mes", tryton.url, tryton.database, "tickethub", "not-the-password",
                                   "production", client))
        client.close()
