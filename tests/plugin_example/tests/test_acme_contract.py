"""Acme's connector against its twin: tickethub's public contract suite, as a third party runs it."""

from __future__ import annotations

import httpx
import pytest
from acme_desk.connector import AcmeConnector
from acme_desk.plugin import CONNECTOR_TYPE, AcmeOptions
from acme_desk.twin import AcmeTwin

from connectors.testing import ConnectorContract, ContractPeer


class TestAcmeTwin(ConnectorContract):
    @pytest.fixture
    def contract(self) -> ContractPeer:
        twin = AcmeTwin("token-1")
        client = httpx.Client(transport=twin.transport())
        return ContractPeer(CONNECTOR_TYPE, AcmeConnector("desk", "http://acme.test", "token-1", client), "desk",
                            create_fields={"customer": "Ada Lovelace", "problem": "Pump jams"},
                            change_fields={"problem": "Pump jams at start"}, missing_local_id="999",
                            author="hub@acme.example", secret="wrong-token", options=AcmeOptions(),
                            bad_credentials=AcmeConnector("desk", "http://acme.test", "wrong-token", client))
