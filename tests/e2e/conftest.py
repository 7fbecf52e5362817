"""Fixtures for end-to-end tests: receivers and the hub's processes on each backend."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import services_missing
from tests.e2e.harness import HubProcesses, Receiver

RABBIT_URL = "amqp://guest:guest@127.0.0.1:5672//"
REDIS_URL = "redis://127.0.0.1:6379/0"


def _answers(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=2):
        pass


@pytest.fixture
def receivers() -> Iterator[dict[str, Receiver]]:
    started = {name: Receiver(name).start() for name in ("erp", "mes", "wms", "courier")}
    yield started
    for receiver in started.values():
        receiver.stop()


def _hub(request: pytest.FixtureRequest, backend: str, tmp_path: Path,
         receivers: dict[str, Receiver]) -> HubProcesses:
    if backend == "embedded":
        database, broker = f"sqlite:///{tmp_path / 'hub.db'}", None
    else:
        port, broker = (5672, RABBIT_URL) if backend == "pg-rabbitmq" else (6379, REDIS_URL)
        try:
            _answers(port)
        except OSError as exc:
            services_missing(f"{backend} broker on 127.0.0.1:{port}", exc)
        database = str(request.getfixturevalue("pg_url"))
    hub = HubProcesses(tmp_path, database, broker, receivers)
    hub.write_config()
    migrated = hub.run_cli("db", "upgrade")
    assert migrated.returncode == 0, migrated.stderr
    return hub


@pytest.fixture
def hub_factory(request: pytest.FixtureRequest, tmp_path: Path,
                receivers: dict[str, Receiver]) -> Iterator[object]:
    made: list[HubProcesses] = []

    def make(backend: str = "embedded") -> HubProcesses:
        hub = _hub(request, backend, tmp_path, receivers)
        made.append(hub)
        return hub

    yield make
    for hub in made:
        if request.node.rep_call.failed if hasattr(request.node, "rep_call") else False:
            print(hub.logs())
        hub.stop()


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
