"""The Celery tasks' own behaviour, run in this process against a real embedded broker folder."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kombu import Producer
from sqlalchemy import func, select

from hub import bootstrap as runtime_module
from hub.bootstrap import Hub, bootstrap
from hub.config import load_settings
from hub.store.engine import make_engine
from hub.store.migrate import upgrade
from hub.store.tables import deliveries, outbox, tickets
from hub.tasks import process_events
from hub.usecases import process as services
from hub.usecases.ingest import accept_event


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

    from hub.messaging.celery_app import celery_app

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


def _crm_change(name: str, at: str = "2026-02-13T09:00:00Z") -> dict[str, Any]:
    return {"modified_at": at, "author": "agent@example.com", "fields": {"contact": {"name": name}}}


def test_events_of_one_message_are_applied_together_and_one_that_fails_is_rolled_back_alone(
        hub_with_runtime: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    """A message's events are applied in one transaction; an event whose apply breaks halfway (after its
    ticket and link are written) leaves nothing behind and stays received for the sweeper, and the others are
    applied and their deliveries published."""
    hub = hub_with_runtime
    ids = [accept_event(hub, "crm", f"msg-{n}", {"local_id": f"case-{n}", **_crm_change(f"Ada {n}")})[0]
           for n in range(4)]
    weigh = services._weigh

    def breaks_on_case_2(hub: Hub, record: Any, *args: Any) -> Any:
        done = weigh(hub, record, *args)  # its ticket and link are written by now...
        if record.local_id == "case-2":
            raise RuntimeError("disk I/O error")  # ...and then it fails
        return done

    monkeypatch.setattr(services, "_weigh", breaks_on_case_2)
    process_events(ids)

    with hub.store.unit_of_work() as uow:
        assert [uow.inbox.get(i)["state"] for i in ids] == ["processed", "processed", "received", "processed"]
        assert uow.tickets.find_by_xref("crm", "case-2") is None
        assert all(uow.tickets.find_by_xref("crm", f"case-{n}") for n in (0, 1, 3))
        scheduled = sorted(uow.conn.execute(select(deliveries.c.id)).scalars())
        broken_ticket_rows = uow.conn.execute(select(outbox).where(outbox.c.ticket_id.not_in(
            select(deliveries.c.ticket_id)))).all()
    assert scheduled and not broken_ticket_rows
    assert sorted(i for m in _messages(hub, "deliveries") for i in m.decode()[0][0]) == scheduled


def test_changes_to_one_record_in_one_message_make_one_ticket_with_the_newest_value(hub_with_runtime: Hub) -> None:
    hub = hub_with_runtime
    newer = accept_event(hub, "crm", "msg-b", {"local_id": "case-7", **_crm_change("Grace", "2026-02-13T10:00:00Z")})
    older = accept_event(hub, "crm", "msg-a", {"local_id": "case-7", **_crm_change("Ada", "2026-02-13T09:00:00Z")})

    process_events([newer[0], older[0], newer[0]])  # newest first, and one of them twice

    with hub.store.unit_of_work() as uow:
        ticket_id = uow.tickets.find_by_xref("crm", "case-7")
        assert ticket_id is not None
        assert uow.tickets.get(ticket_id).fields["customer.name"].value == "Grace"
        assert [uow.inbox.get(e[0])["state"] for e in (newer, older)] == ["processed", "processed"]
        assert uow.conn.execute(select(func.count()).select_from(tickets)).scalar_one() == 1


def _messages(hub: Hub, logical: str) -> list[Any]:
    """Take every message waiting on one of the hub's queues (the embedded broker), decoded."""
    from hub.messaging.celery_app import celery_app, queue_name

    taken = []
    with celery_app.connection_for_read() as conn:
        while (message := conn.default_channel.basic_get(queue_name(hub.settings, logical), no_ack=True)):
            taken.append(message)
    return taken


def test_published_deliveries_are_celery_task_messages_with_their_countdown(hub_with_runtime: Hub) -> None:
    """What the hub publishes itself is what Celery's apply_async would: protocol 2, JSON, the task's name,
    its arguments (deliveries in batches of up to DELIVERY_BATCH a message), and for a retry the time it is due."""
    runtime, most = runtime_module.current_runtime(), runtime_module.DELIVERY_BATCH
    before = datetime.now(UTC)
    runtime.publish_deliveries(list(range(1, most + 3)), countdown=30)
    messages = _messages(hub_with_runtime, "deliveries")
    assert [m.headers["task"] for m in messages] == ["tickethub.deliver_batch"] * 2
    assert sorted(m.decode()[0] for m in messages) == [[list(range(1, most + 1))], [[most + 1, most + 2]]]
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
    ids = list(range(1, 2 * runtime_module.DELIVERY_BATCH + 5))
    runtime_module.current_runtime().publish_deliveries(ids)  # three messages
    taken = _messages(hub_with_runtime, "deliveries")
    assert len(taken) == 3 and sorted(i for m in taken for i in m.decode()[0][0]) == ids
