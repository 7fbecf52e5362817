"""The Celery tasks' own behaviour, run in this process against a real embedded broker folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

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
    runtime_module.start_runtime(hub)
    yield hub
    runtime_module._current = before
    engine.dispose()


def test_an_event_that_fails_does_not_hold_back_the_rest_of_its_batch(hub_with_runtime: Hub) -> None:
    """A batch of events is processed event by event: one that cannot be processed is skipped, not fatal."""
    hub = hub_with_runtime
    change = {"modified_at": "2026-02-13T09:00:00Z", "author": "agent@example.com",
              "fields": {"contact": {"name": "Ada"}}}
    ids = [accept_event(hub, "crm", f"msg-{n}", {"local_id": f"case-{n}", **change})[0] for n in range(2)]

    process_events([ids[0], "crm:no-such-event", ids[1]])

    with hub.store.unit_of_work() as uow:
        assert [uow.inbox.get(i)["state"] for i in ids] == ["processed", "processed"]
