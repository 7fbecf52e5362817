"""Shared fixtures: databases on SQLite (always) and PostgreSQL (marked integration), and a wired hub.

PostgreSQL tests get a fresh database each, created from a migrated template. Where PostgreSQL
does not answer they are skipped, except under CI or TICKETHUB_REQUIRE_SERVICES=1, where they fail:
CI must never go green by skipping what it was meant to prove.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

from hub.bootstrap import Hub, bootstrap
from hub.config import load_settings
from hub.store.engine import make_engine
from hub.store.migrate import upgrade

PG_ADMIN_URL = os.environ.get("TICKETHUB_TEST_PG_URL", "postgresql+psycopg://root@127.0.0.1:5432/test")
REQUIRE_SERVICES = bool(os.environ.get("CI")) or os.environ.get("TICKETHUB_REQUIRE_SERVICES") == "1"
_MARKS = {"integration", "e2e", "peer"}
collect_ignore = ["plugin_example"]  # a third party's package, tested by test_plugins.py from outside the tree


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if not _MARKS & {m.name for m in item.iter_markers()}:
            item.add_marker(pytest.mark.unit)


def services_missing(what: str, error: Exception) -> None:
    message = f"{what} is not reachable ({type(error).__name__}: {error})"
    if REQUIRE_SERVICES:
        pytest.fail(f"{message}; CI requires it (start it, see .ci/run)")
    pytest.skip(message)


# ---- SQLite ---------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test (migrating once is faster than per test)."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    return path


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    target = tmp_path / "tickethub.db"
    shutil.copy(sqlite_template, target)
    return f"sqlite:///{target}"


# ---- PostgreSQL -----------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def pg_admin() -> Iterator[Engine]:
    # pre-ping: a fault test restarts PostgreSQL, and the pooled connection must not be a dead one afterwards
    engine = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # any connection failure means the server is not there
        engine.dispose()
        services_missing(f"PostgreSQL at {PG_ADMIN_URL}", exc)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def pg_template(pg_admin: Engine) -> Iterator[str]:
    name = f"th_template_{uuid.uuid4().hex[:10]}"
    with pg_admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine = make_engine(_pg_url(name))
    upgrade(engine)
    engine.dispose()
    yield name
    with pg_admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def pg_url(pg_admin: Engine, pg_template: str) -> Iterator[str]:
    name = f"th_test_{uuid.uuid4().hex[:12]}"
    with pg_admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"'))
    yield _pg_url(name)
    with pg_admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _pg_url(database: str) -> str:
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{database}"


# ---- both -----------------------------------------------------------------------------------------

@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def database_url(request: pytest.FixtureRequest) -> str:
    """The URL of a fresh, migrated database: every test using it runs on SQLite and on PostgreSQL."""
    fixture = "sqlite_url" if request.param == "sqlite" else "pg_url"
    return str(request.getfixturevalue(fixture))


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 2, 13, 9, 30, tzinfo=UTC))


@pytest.fixture
def hub(engine: Engine, clock: Clock) -> Hub:
    """The hub wired as in production (default systems and mappings) on the test database."""
    return bootstrap(load_settings(None, environ={}), engine=engine, clock=clock)
