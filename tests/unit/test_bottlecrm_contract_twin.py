"""The CRM connector's contract against the sandbox twin (offline)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from connectors.bottlecrm.connector import BottleCRMConnector
from connectors.bottlecrm.twin import BottleCRMTwin
from connectors.testing.bottlecrm import BottleCRMContract, Peer


class TestTwin(BottleCRMContract):
    @pytest.fixture
    def peer(self) -> Iterator[Peer]:
        received: list[tuple[dict[str, str], bytes]] = []

        def capture(request: httpx.Request) -> httpx.Response:
            received.append((dict(request.headers), request.content))
            return httpx.Response(202)

        twin = BottleCRMTwin(httpx.Client(transport=httpx.MockTransport(capture)), deliver="inline")
        token = twin.add_user("tickethub@example.com")
        secret = twin.register_webhook("http://hub.test/webhooks/crm",
                                       ["ticket.created", "ticket.updated", "contact.created", "contact.updated"])
        client = twin.http_client()
        yield Peer(BottleCRMConnector("crm", "http://bottlecrm.sandbox", token, client), "tickethub@example.com",
                   secret, lambda: list(received), BottleCRMConnector("crm", "http://bottlecrm.sandbox",
                                                                      "bcrm_pat_wrong", client))
        client.close()
        twin.close()
