"""The Kuaidi100 connector's contract against the sandbox twin (offline): pushes land in a capturing client."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence

import httpx
import pytest

from connectors.kuaidi100.connector import Kuaidi100Connector
from connectors.kuaidi100.twin import Kuaidi100Twin
from connectors.testing.kuaidi100 import Kuaidi100Contract, Peer

KEY, CUSTOMER, SALT = "twin-key-0123456789", "TWINCUSTOMER0123456789ABCDEF", "twin-salt-0123456789"
CALLBACK = "http://hub.test/webhooks/courier"


class TestTwin(Kuaidi100Contract):
    @pytest.fixture
    def peer(self) -> Iterator[Peer]:
        received: list[tuple[dict[str, str], bytes]] = []

        def capture(request: httpx.Request) -> httpx.Response:
            received.append((dict(request.headers), request.content))
            return httpx.Response(200, json={"result": True, "returnCode": "200", "message": "成功"})

        twin = Kuaidi100Twin(KEY, CUSTOMER, push_client=httpx.Client(transport=httpx.MockTransport(capture)))
        numbers = itertools.count(1)

        def journey(steps: Sequence[tuple[str, str]]) -> tuple[str, str]:
            num = f"SF{next(numbers):010d}"
            twin.script("shunfeng", num, steps)
            return "shunfeng", num

        def advance(com: str, num: str) -> None:
            twin.advance(com, num)

        client = httpx.Client(transport=twin.transport())

        def connector(key: str) -> Kuaidi100Connector:
            return Kuaidi100Connector("courier", twin.base_url, key, CUSTOMER, SALT, CALLBACK, client)

        yield Peer(connector(KEY), KEY, CUSTOMER, SALT, journey, advance, lambda: list(received),
                   connector("wrong-key"), "shunfeng:SF9999999999")
        client.close()
        twin.close()
