"""The publisher's messages are the ones Celery's own `send_task` sends: the same body, headers and properties
(but the task's id), on the same queue, with the same content type, read back from kombu's in-memory broker."""

from __future__ import annotations

from typing import Any

import pytest
from celery import Celery
from kombu import Queue

from hub.messaging.publisher import publish

pytestmark = pytest.mark.unit

TASK = "tickethub.deliver"


def _app() -> Celery:
    app = Celery("publisher-test", broker="memory://", set_as_current=False)
    app.conf.update(task_serializer="json", accept_content=["json"], task_ignore_result=True,
                    task_routes={TASK: {"queue": "deliveries-test"}})
    return app


def _take(app: Celery) -> list[Any]:
    with app.connection_for_read() as conn:
        queue = Queue("deliveries-test").bind(conn.default_channel)
        messages = []
        while (message := queue.get(no_ack=True)) is not None:
            messages.append(message)
        return messages


@pytest.mark.parametrize("countdown", [None, 30.0])
def test_a_published_message_is_what_send_task_would_have_sent(countdown: float | None) -> None:
    app = _app()
    app.send_task(TASK, (42,), countdown=countdown)
    publish(app, TASK, [(42,)], countdown=countdown)
    theirs, ours = _take(app)
    assert ours.decode() == theirs.decode() == [[42], {}, {"callbacks": None, "errbacks": None, "chain": None,
                                                           "chord": None}]
    assert (ours.content_type, ours.content_encoding) == (theirs.content_type, theirs.content_encoding)
    varying = {"id", "root_id", "eta", "origin"}  # a new id each message; eta is "now + countdown", to the microsecond
    assert {k: v for k, v in ours.headers.items() if k not in varying} == {
        k: v for k, v in theirs.headers.items() if k not in varying}
    assert set(ours.headers) == set(theirs.headers)
    assert (ours.headers["eta"] is None) == (theirs.headers["eta"] is None)
    assert ours.headers["origin"].startswith("gen") and theirs.headers["origin"].startswith("gen")
    # reply_to: send_task names its thread's address for RPC results; the hub's tasks return none (empty here)
    own = ("correlation_id", "delivery_tag", "reply_to")
    mine = {k: v for k, v in ours.properties.items() if k not in own}
    celerys = {k: v for k, v in theirs.properties.items() if k not in own}
    assert ours.properties["reply_to"] == ""
    assert mine == celerys
    assert ours.properties["correlation_id"] == ours.headers["id"]
