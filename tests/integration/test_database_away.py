"""While the database cannot be reached, the API says so: webhooks and reads answer 503 with Retry-After and a
short message (no traceback, no secret, nothing stored), /readyz says not ready and why, /healthz stays up;
once the database answers, the sender's retry is accepted. Processes starting meanwhile wait for it.

The database is really away here: a PostgreSQL URL on a port nobody listens on (then the real one)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from hub.bootstrap import bootstrap
from hub.config import load_settings
from hub.core.signing import sign_standard
from hub.http.app import create_app
from hub.store.engine import make_engine, unavailable, wait_for_database
from tests.e2e.harness import free_port

pytestmark = pytest.mark.integration

TOKEN = "test-token-not-a-secret"
SECRET = "whsec_" + "c2VjcmV0LWZvci1kYXRhYmFzZS1hd2F5LXRlc3Rz"


def _signed(body: bytes, msg_id: str = "evt-1") -> dict[str, str]:
    stamp = int(time.time())
    return {"content-type": "application/json", "webhook-id": msg_id, "webhook-timestamp": str(stamp),
            "webhook-signature": sign_standard(SECRET, msg_id, stamp, body)}


def _client(engine: Engine) -> TestClient:
    hub = bootstrap(load_settings(None, environ={}), engine=engine)
    return TestClient(create_app(hub, TOKEN, {"crm": [SECRET]}), raise_server_exceptions=False)


def test_with_the_database_away_the_api_answers_503_and_the_retry_is_accepted_once_it_is_back(pg_url: str) -> None:
    away = make_engine(f"postgresql+psycopg://hub:s3cret-password@127.0.0.1:{free_port()}/test", pool_size=1)
    client = _client(away)
    body = json.dumps({"local_id": "CASE-1", "modified_at": datetime.now(UTC).isoformat(), "author": "agent",
                       "fields": {"contact": {"name": "Ada"}}}).encode()

    for answer in (client.post("/webhooks/crm", content=body, headers=_signed(body)),
                   client.get("/tickets/20260213-SVC-00001", headers={"Authorization": f"Bearer {TOKEN}"}),
                   client.get("/deliveries", headers={"Authorization": f"Bearer {TOKEN}"})):
        assert answer.status_code == 503, answer.text
        assert answer.headers["retry-after"] == "5"
        assert "not reachable" in answer.json()["detail"]
        assert "s3cret" not in answer.text and "Traceback" not in answer.text
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json()["database"].startswith("unavailable: ")
    assert "refused" in ready.json()["database"] and "s3cret" not in ready.text

    back = _client(make_engine(pg_url))  # the same webhook, sent again: stored now, once
    first = back.post("/webhooks/crm", content=body, headers=_signed(body))
    assert first.status_code == 202 and first.json() == {"event_id": "crm:evt-1", "duplicate": False}


def test_a_wrong_database_is_not_mistaken_for_one_that_is_away(pg_url: str) -> None:
    """Wrong credentials or database name: no wait mends it, so a starting process exits instead of waiting."""
    wrong = make_engine(pg_url.rsplit("/", 1)[0] + "/no_such_database_here")
    with pytest.raises(Exception) as raised:
        wait_for_database(wrong, say=lambda _text: None, sleep=lambda _s: None)
    assert not unavailable(raised.value)


def test_a_process_starting_while_the_database_is_away_waits_and_says_so_once() -> None:
    said: list[str] = []
    naps: list[float] = []
    engine = make_engine(f"postgresql+psycopg://hub@127.0.0.1:{free_port()}/test")

    def nap(seconds: float) -> None:
        naps.append(seconds)
        if len(naps) == 6:  # the database "comes back": point the engine at one that answers
            engine.dispose()
            raise _Back

    class _Back(Exception):
        pass

    with pytest.raises(_Back):
        wait_for_database(engine, say=said.append, sleep=nap)
    assert len(said) == 1 and said[0].startswith("waiting for the database at postgresql+psycopg://hub@127.0.0.1")
    assert naps == [0.25, 0.5, 1.0, 2.0, 4.0, 5.0]  # back-off, capped


def test_a_pooled_connection_whose_server_side_died_is_replaced(pg_url: str, pg_admin: Engine,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A pooled connection PostgreSQL dropped (a restart, a terminated backend): if it rested, the checkout notices
    and reconnects, and the work runs as if nothing happened; if it was in use moments ago, the first statement
    fails as `unavailable` (the API's 503, a worker's retry), the pool is dropped, and the next work runs."""
    from sqlalchemy import text

    monkeypatch.setattr("hub.store.engine.PING_AFTER_IDLE", 0.2)  # a shorter rest for the test
    engine = make_engine(pg_url, pool_size=1, max_overflow=0)

    def backend() -> int:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())

    def terminate(pid: int) -> None:
        with pg_admin.connect() as admin:
            admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})

    first = backend()
    terminate(first)
    time.sleep(0.3)
    second = backend()  # rested: pinged, found dead, replaced; no error
    assert second != first
    terminate(second)
    with pytest.raises(Exception) as raised:  # noqa: PT011 (whatever the driver raises; what matters is below)
        backend()  # in use moments ago: taken unpinged, its first statement finds it dead
    assert unavailable(raised.value)
    assert backend() not in (first, second)
    engine.dispose()
