"""The CRM connector's contract against a real BottleCRM: the same assertions the twin passes."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from connectors.bottlecrm.connector import BottleCRMConnector
from connectors.testing.bottlecrm import BottleCRMContract, Peer
from tests.e2e.harness import Receiver
from tests.peers.bottlecrm import BottleCRM

pytestmark = [pytest.mark.peer, pytest.mark.integration]


class TestRealBottleCRM(BottleCRMContract):
    @pytest.fixture
    def peer(self, bottlecrm: BottleCRM) -> Iterator[Peer]:
        receiver = Receiver("hub").start()
        secret = bottlecrm.register_webhook(receiver.url, ["ticket.created", "ticket.updated", "contact.created",
                                                           "contact.updated"])
        client = httpx.Client(timeout=30)

        def deliveries() -> list[tuple[dict[str, str], bytes]]:
            with receiver.lock:
                return [(r.headers, r.raw) for r in receiver.received]

        yield Peer(BottleCRMConnector("crm", bottlecrm.base_url, bottlecrm.pat, client), bottlecrm.email, secret,
                   deliveries, BottleCRMConnector("crm", bottlecrm.base_url, "bcrm_pat_wrong", client))
        bottlecrm.remove_webhook(receiver.url)
        client.close()
        receiver.stop()
