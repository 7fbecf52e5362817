"""The deliveries' async client (aiohttp on one event loop) against real sockets: a receiver sees the same
request from it as from the connector's own httpx path (method, path, body, and every header the hub sets:
content type and the Standard Webhooks id, timestamp and signature), and each kind of answer or non-answer
means the same WriteResult either way."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from connectors.generic.connector import GenericConnector
from hub.core.ports import WriteRequest
from hub.core.signing import verify_standard
from hub.outbound import AsyncSender
from tests.e2e.harness import OUT_SECRET, Receiver, free_port, wait_until

pytestmark = pytest.mark.integration

HUB_HEADERS = ("content-type", "webhook-id", "webhook-timestamp", "webhook-signature")


@pytest.fixture
def sender() -> Iterator[AsyncSender]:
    made = AsyncSender(timeout_seconds=1.0)
    yield made
    made.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver("erp").start()
    yield made
    made.stop()


def _request(n: int = 1) -> WriteRequest:
    return WriteRequest(n, "20260213-SVC-00001", "erp", None, {"party.name": "Ada 李", "party.phone": "+44 1"}, 1)


def test_the_receiver_sees_the_same_request_from_either_client(sender: AsyncSender, receiver: Receiver) -> None:
    with httpx.Client() as client:
        connector = GenericConnector("erp", receiver.url, OUT_SECRET, client)
        prepared = connector.prepare(_request())
        by_httpx = client.request(prepared.method, prepared.url, content=prepared.body, headers=dict(prepared.headers))
        assert by_httpx.status_code == 200
    [answer] = sender.send([prepared])
    assert answer.status == 200
    first, second = receiver.received
    assert first.raw == second.raw == prepared.body
    assert {h: first.headers[h] for h in HUB_HEADERS} == {h: second.headers[h] for h in HUB_HEADERS}
    assert verify_standard([OUT_SECRET], second.headers, second.raw, time.time()) == "delivery-1"


def test_answers_mean_the_same_on_both_paths(sender: AsyncSender, receiver: Receiver) -> None:
    receiver.script = [(200, 0.0), (200, 0.0), (429, 0.0), (429, 0.0), (400, 0.0), (400, 0.0), (200, 1.5),
                       (200, 1.5)]
    with httpx.Client(timeout=1.0) as client:
        connector = GenericConnector("erp", receiver.url, OUT_SECRET, client)
        for _ in range(4):  # linked, refused with a wait, refused for good, no answer in time
            synchronous = connector.write(_request())
            [answer] = sender.send([connector.prepare(_request())])
            asynchronous = connector.result(answer)
            assert (synchronous.status_code, synchronous.local_id, synchronous.permanent) == (
                asynchronous.status_code, asynchronous.local_id, asynchronous.permanent)
            assert (synchronous.error or "")[:9] == (asynchronous.error or "")[:9]
        assert synchronous.status_code is None and (asynchronous.error or "").startswith("timed out")
    nobody = GenericConnector("erp", f"http://127.0.0.1:{free_port()}/", OUT_SECRET, httpx.Client())
    [answer] = sender.send([nobody.prepare(_request())])
    result = nobody.result(answer)
    assert result.status_code is None and (result.error or "").startswith("no answer")


def test_many_writes_go_out_at_once_from_one_loop(receiver: Receiver) -> None:
    """Twenty writes to a receiver answering each after 0.5 s are all in flight together: the receiver has
    them all before it has answered the first (one after another it would hold one at a time)."""
    sender = AsyncSender(timeout_seconds=8.0)  # the receiver's listen backlog is 5: some connects are retried
    receiver.script = [(200, 0.5)] * 20
    with httpx.Client() as client:
        connector = GenericConnector("erp", receiver.url, OUT_SECRET, client)
        writes = [connector.prepare(_request(n)) for n in range(1, 21)]
    in_flight = sender.submit(writes)
    wait_until(lambda: len(receiver.bodies()) >= 10, timeout=5, what="ten writes received at once")
    assert not in_flight.done()  # ten received, none answered yet: they were sent together
    answers = in_flight.result()
    assert [a.status for a in answers] == [200] * 20
    assert sorted(b["delivery_id"] for b in receiver.bodies()) == list(range(1, 21))
    sender.close()


def test_the_sender_runs_on_libuvs_loop_where_it_is_installed(sender: AsyncSender, receiver: Receiver) -> None:
    uvloop = pytest.importorskip("uvloop")  # not on Windows: there the standard loop sends the same requests
    assert isinstance(sender.loop, uvloop.Loop)
    with httpx.Client() as client:
        [answer] = sender.send([GenericConnector("erp", receiver.url, OUT_SECRET, client).prepare(_request())])
    assert answer.status == 200 and receiver.received[0].raw
