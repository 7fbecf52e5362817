"""One real BottleCRM per test session, shared by the smoke tests and the connector's contract suite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import services_missing
from tests.peers import tryton as tryton_peer
from tests.peers.bottlecrm import BottleCRM, PeerUnavailable, start_bottlecrm


@pytest.fixture(scope="session")
def bottlecrm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BottleCRM]:
    try:
        crm = start_bottlecrm(Path(tmp_path_factory.mktemp("bottlecrm")))
    except PeerUnavailable as exc:
        services_missing("BottleCRM (needs Python >= 3.12)", exc)
        raise  # not reached: services_missing skips, or fails under CI
    yield crm
    crm.stop()


@pytest.fixture(scope="session")
def tryton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tryton_peer.Tryton]:
    try:
        erp = tryton_peer.start_tryton(Path(tmp_path_factory.mktemp("tryton")))
    except tryton_peer.PeerUnavailable as exc:
        services_missing("Tryton 8.2 (needs Python >= 3.11)", exc)
        raise  # not reached: services_missing skips, or fails under CI
    yield erp
    erp.stop()
