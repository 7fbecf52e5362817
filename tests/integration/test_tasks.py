"""The Celery tasks' own behaviour, run in this process against a real embedded broker folder."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kombu import Producer

from hub import runtime as runtime_module
from hub.bootstrap import Hub, bootstrap
from hub.config import load_settings
from hub.services import accept_event
from hub.store.engine import make_engine
from hub.store.migrate import upgrade
from hub.tasks import process_events


@pytest.fixture
def hub_with_runtime(tmp_path: Path) -> Iterator[Hub]:
    config = tmp_path / "tickethub.toml"
    config.write_text(f'[hub]\ndatabase_url = "sqlite:///{tmp_path / "hub.db"}"\ndata_dir = "{tmp_path / "var"}"\n')
    settings = load_settings(config, environ={})
    engine = make_engine(settings.hub.database_url)
    upgrade(engine)
    hub = bootstrap(settings, engine=engine)
    before = runtime_module._current
    _forget_broker_connections()
    runtime_module.start_runtime(hub)
    yield hub
    runtime_module._current = before
    _forget_broker_connections()
    engine.dispose()


def _forget_broker_connections() -> None:
    """Each test has its own embedded broker folder, but its URL is always the same, so kombu's pools (keyed
    by URL) would hand out a connection to an earlier test's folder."""
    from kombu import pools

    from hub.celery_app import celery_app

    pools.reset()
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


def test_an_event_that_fails_does_not_hold_back_the_rest_of_its_batch(hub_with_runtime: Hub) -> None:
    """A batch of events is processed event by event: one that cannot be processed is skipped, not fatal."""
    hub = hub_with_runtime
    change = {"modified_at": "2026-02-13T09:00:00Z", "author": "agent@example.com",
              "fields": {"contact": {"name": "Ada"}}}
    ids = [accept_event(hub, "crm", f"msg-{n}", {"local_id": f"case-{n}", **change})[0] for n in range(2)]

    process_events([ids[0], "crm:no-such-event", ids[1]])

    with hub.store.unit_of_work() as uow:
        assert [uow.inbox.get(i)["state"] for i in ids] == ["processed", "processed"]


def _messages(hub: Hub, logical: str) -> list[Any]:
    """Take every message waiting on one of the hub's queues (the embedded broker), decoded."""
    from hub.celery_app import celery_app, queue_name

    taken = []
    with celery_app.connection_for_read() as conn:
        while (message := conn.default_channel.basic_get(queue_name(hub.settings, logical), no_ack=True)):
            taken.append(message)
    return taken


def test_published_deliveries_are_celery_task_messages_with_their_countdown(hub_with_runtime: Hub) -> None:
    """What the hub publishes itself is what Celery's apply_async would: protocol 2, JSON, the task's name,
    its arguments, and for a retry the time it is due."""
    runtime = runtime_module.current_runtime()
    before = datetime.now(UTC)
    runtime.publish_deliveries([7, 8], countdown=30)
    messages = _messages(hub_with_runtime, "deliveries")
    assert [m.headers["task"] for m in messages] == ["tickethub.deliver"] * 2
    assert sorted(m.decode()[0] for m in messages) == [[7], [8]]
    assert all(m.content_type == "application/json" and m.headers["id"] == m.properties["correlation_id"]
               for m in messages)
    due = [datetime.fromisoformat(m.headers["eta"]) for m in messages]
    assert all(timedelta(seconds=29) < at - before < timedelta(seconds=32) for at in due)


def test_a_failed_direct_publish_hands_the_rest_to_celery_and_loses_nothing(hub_with_runtime: Hub,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    original, calls = Producer.publish, []

    def flaky(self: Producer, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:  # the second write breaks, as a dropped connection would
            raise ConnectionResetError("broker went away")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Producer, "publish", flaky)
    runtime_module.current_runtime().publish_deliveries([1, 2, 3])
    assert sorted(m.decode()[0][0] for m in _messages(hub_with_runtime, "deliveries")) == [1, 2, 3]
