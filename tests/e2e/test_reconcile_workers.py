"""Reconciliation spread over Celery workers on PostgreSQL + RabbitMQ: the run's parts go to the workers; a
worker killed while its chunk's transaction is open leaves the chunk to be redone by the other worker, and
nothing is applied or reported twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from connectors.generic.twin import GenericTwin
from hub.bootstrap import bootstrap
from hub.config import load_settings
from hub.plugins import build_connector
from hub.store.engine import make_engine
from hub.store.migrate import upgrade
from hub.usecases.deliver import deliver_once
from hub.usecases.ingest import accept_event
from hub.usecases.process import process_event
from tests.conftest import services_missing
from tests.e2e.conftest import RABBIT_URL, _answers
from tests.e2e.harness import free_port, wait_until
from tests.integration.test_reconcile import _mappings

pytestmark = [pytest.mark.e2e, pytest.mark.integration]
SECRET = "whsec_cmVjb25jaWxlLXdvcmtlcnMtc2VjcmV0LTMyYnl0ZXMh"
TOKEN = "export-token"
TICKETS = 12
NO_EXPORT = ("wms", "courier")


class TwinServer:
    """The twins over HTTP on one port: /<system>/hub takes writes, /<system>/export serves the export."""

    def __init__(self, twins: dict[str, GenericTwin]):
        self.twins, self.port = twins, free_port()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0) or 0))
                system = self.path.strip("/").split("/")[0]
                request = httpx.Request(self.command, f"http://127.0.0.1{self.path}", headers=dict(self.headers),
                                        content=body)
                twin = server.twins.get(system)
                response = twin.handle(request) if twin else httpx.Response(404)
                payload = response.content
                self.send_response(response.status_code)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _answer  # noqa: N815 (http.server's names)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def team(tmp_path: Path, pg_url: str) -> Iterator[dict[str, object]]:
    try:
        _answers(5672)
    except OSError as exc:
        services_missing(f"RabbitMQ at {RABBIT_URL}", exc)
    twins = {name: GenericTwin(name, SECRET, TOKEN, write_path=f"/{name}/hub",
                               export_path=None if name in NO_EXPORT else f"/{name}/export")
             for name in ("crm", "erp", "mes", "wms", "courier")}
    server = TwinServer(twins)
    base = f"http://127.0.0.1:{server.port}"
    _mappings(tmp_path)  # the phone owned by the CRM and the ERP; the MES's notes held for review
    lines = [f'[hub]\ndatabase_url = "{pg_url}"\nbroker_url = "{RABBIT_URL}"\ndata_dir = "{tmp_path / "var"}"\n'
             'mappings_dir = "mappings"\nclock_skew_seconds = 2\n'
             f'queue_prefix = "rec-{os.getpid()}-{int(time.time())}-"\n',
             "[delivery]\nbackoff_base_seconds = 0.3\nbackoff_cap_seconds = 2\nlease_seconds = 6\n"
             "redispatch_after_seconds = 3\nsweep_interval_seconds = 1\n",
             "[reconcile]\nchunk_tickets = 4\nenabled = false\n"]
    for name in twins:
        lines.append(f'[systems.{name}]\norigin = {"true" if name == "crm" else "false"}\n'
                     f'base_url = "{base}/{name}/hub"\nwebhook_secrets_env = "REC_SECRETS"\n'
                     'credentials_env = "REC_TOKEN"\n'
                     + (f'export_url = "{base}/{name}/export"\n' if name not in NO_EXPORT else ""))
    config = tmp_path / "tickethub.toml"
    config.write_text("\n".join(lines))
    env = {**os.environ, "TICKETHUB_CONFIG": str(config), "REC_SECRETS": SECRET, "REC_TOKEN": TOKEN,
           "TICKETHUB_API_TOKEN": "t", "PYTHONUNBUFFERED": "1"}
    for key in ("TICKETHUB_DATABASE_URL", "TICKETHUB_BROKER_URL", "TICKETHUB_DATA_DIR"):
        env.pop(key, None)
    engine = make_engine(pg_url)
    upgrade(engine)
    hub = bootstrap(load_settings(config, environ={"REC_SECRETS": SECRET}), engine=engine)
    client = httpx.Client(timeout=10)
    connectors = {s: build_connector(s, hub.settings, {s: [SECRET] for s in twins}, client, {s: TOKEN for s in twins})
                  for s in twins}
    start = datetime.now(UTC) - timedelta(hours=2)
    for n in range(TICKETS):  # tickets opened in the CRM and written to the ERP and MES, as the pipeline would
        twins["crm"].create("agent@example.com", at=start + timedelta(minutes=n), local_id=f"CASE-{n}", **{
            "contact.name": f"Customer {n}", "case.description": f"fault {n}", "case.status": "New",
            "case.product": "PUMP-100", "case.serial_number": f"SN-{n}"})
        event_id, _ = accept_event(hub, "crm", f"c{n}", twins["crm"].notice(f"CASE-{n}"))
        process_event(hub, event_id)
    for _ in range(5):
        with hub.store.unit_of_work() as uow:
            due = [r["id"] for r in uow.deliveries.find("pending", None, None, 1000)]
        for delivery_id in due:
            deliver_once(hub, delivery_id, connectors.__getitem__)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    world = {"hub": hub, "twins": twins, "env": env, "config": config, "procs": procs, "tmp": tmp_path}
    yield world
    for proc in procs.values():
        proc.kill()
        proc.wait(10)
    server.close()
    client.close()
    engine.dispose()


def _worker(world: dict, name: str) -> None:  # type: ignore[type-arg]
    log = open(world["tmp"] / f"{name}.log", "ab")  # type: ignore[operator]  # noqa: SIM115 (kept for the child)
    world["procs"][name] = subprocess.Popen(  # type: ignore[index]
        [sys.executable, "-m", "hub", "worker", "--queues", "deliveries", "--concurrency", "4"],
        env=world["env"], stdout=log, stderr=subprocess.STDOUT)  # type: ignore[arg-type]


def test_a_worker_killed_inside_a_chunk_leaves_it_to_the_other_and_nothing_is_applied_twice(
        team: dict, pg_url: str) -> None:  # type: ignore[type-arg]
    """Ticket 5's missed change is being applied when its worker is killed (its chunk's transaction waits on a
    lock the test holds); the other worker redoes the chunk: one history entry, one report item, one write to
    the ERP, every part done once and the run finished with the same report as a run in one process."""
    hub, twins = team["hub"], team["twins"]
    with hub.store.unit_of_work() as uow:  # type: ignore[attr-defined]
        target = uow.tickets.xref_map("crm", ["CASE-5"])["CASE-5"]
    twins["crm"].edit("CASE-5", "supervisor@example.com", **{"contact.name": "Customer Five"})  # type: ignore[index]
    twins["erp"].edit(next(iter(twins["erp"].records)), "accounting", **{"party.name": "typo"})  # type: ignore[index]

    holder = create_engine(pg_url).connect()
    holder.begin()
    holder.execute(text("SELECT ticket_id FROM tickets WHERE ticket_id = :t FOR UPDATE"), {"t": target})
    _worker(team, "worker-a")
    run_id = _start_on_workers(team)
    probe = create_engine(pg_url)

    def blocked() -> bool:
        with probe.connect() as conn:
            waiting = conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                        "AND datname = current_database()")).scalar_one()
            pending = conn.execute(text("SELECT count(*) FROM reconcile_parts WHERE run_id = :r AND state = "
                                        "'pending' AND part LIKE 'compare:%'"), {"r": run_id}).scalar_one()
        return bool(waiting) and pending >= 1

    wait_until(blocked, 90, 0.2, "worker-a to block inside the chunk of the locked ticket")
    team["procs"]["worker-a"].send_signal(signal.SIGKILL)  # type: ignore[index]
    team["procs"].pop("worker-a").wait(10)  # type: ignore[attr-defined]
    _worker(team, "worker-b")
    time.sleep(1.0)
    holder.rollback()
    holder.close()

    _wait_finished(pg_url, run_id)
    with probe.connect() as conn:
        parts = conn.execute(text("SELECT state, count(*) FROM reconcile_parts WHERE run_id = :r GROUP BY state"),
                             {"r": run_id}).all()
        applied = conn.execute(text("SELECT count(*) FROM audit_log WHERE ticket_id = :t AND event_id = :e AND "
                                    "field = 'customer.name' AND outcome = 'applied'"),
                               {"t": target, "e": f"reconcile-run-{run_id}"}).scalar_one()
        items = conn.execute(text("SELECT kind, count(*) FROM reconcile_items WHERE run_id = :r AND ticket_id = :t "
                                  "GROUP BY kind"), {"r": run_id, "t": target}).all()
    probe.dispose()
    assert dict(parts).get("pending", 0) == 0
    assert applied == 1  # the missed change is in the history once, though its chunk ran twice
    assert dict(items) == {"missed_change": 1}
    data = _report(team, run_id)
    assert data["run"]["state"] == "done", data["run"]["error"]
    kinds = sorted(i["kind"] for i in data["items"])
    assert kinds == ["drift", "missed_change"] and data["summary"]["tickets"] == TICKETS
    assert sorted(nc["system"] for nc in data["not_checked"]) == ["courier", "wms"]
    def reached() -> bool:
        return any(rec.fields.get("party", {}).get("name") == "Customer Five"
                   for rec in list(twins["erp"].records.values()))  # type: ignore[index]

    wait_until(reached, 60, 0.3, "the missed change to reach the ERP")
    writes = [b for b in twins["erp"].received if b["fields"].get("party.name") == "Customer Five"]  # type: ignore[index]
    assert len(writes) == 1


def _start_on_workers(team: dict) -> int:  # type: ignore[type-arg]
    """`tickethub reconcile --full --on-workers`: the run's number."""
    started = subprocess.run([sys.executable, "-m", "hub", "reconcile", "--full", "--on-workers"], env=team["env"],
                             capture_output=True, text=True, timeout=60)
    assert started.returncode == 0, started.stderr + started.stdout
    return int(started.stdout.split("run ", 1)[1].split()[0])


def _wait_finished(url: str, run_id: int) -> None:
    probe = create_engine(url)

    def finished() -> bool:
        with probe.connect() as conn:
            return conn.execute(text("SELECT state FROM reconcile_runs WHERE id = :r"), {"r": run_id}).scalar_one() \
                in ("done", "failed")

    wait_until(finished, 120, 0.3, f"run {run_id} to finish on the workers")
    probe.dispose()


def _report(team: dict, run_id: int) -> dict:  # type: ignore[type-arg]
    shown = subprocess.run([sys.executable, "-m", "hub", "reconcile", "show", str(run_id), "--format", "json"],
                           env=team["env"], capture_output=True, text=True, timeout=60)
    return json.loads(shown.stdout)  # type: ignore[no-any-return]


def _run_on_workers(team: dict, url: str) -> dict:  # type: ignore[type-arg]
    run_id = _start_on_workers(team)
    _wait_finished(url, run_id)
    return _report(team, run_id)


def test_seeded_drift_on_two_workers_is_decided_repaired_and_reported_and_the_next_run_is_clean(
        team: dict, pg_url: str) -> None:  # type: ignore[type-arg]
    """The in-process scenario, spread over two workers: a missed webhook, a non-owner edit, two owners within the
    skew, an orphan, a deleted record, a field held for review, systems without export; the repairs reach the
    twins, and a second run has nothing left to do but the standing reports."""
    hub, twins = team["hub"], team["twins"]
    with hub.store.unit_of_work() as uow:  # type: ignore[attr-defined]
        erp_of = {t: r for r, t in uow.tickets.xref_map("erp", list(twins["erp"].records)).items()}  # type: ignore[index]
        mes_of = {t: r for r, t in uow.tickets.xref_map("mes", list(twins["mes"].records)).items()}  # type: ignore[index]
        case = uow.tickets.xref_map("crm", [f"CASE-{n}" for n in range(TICKETS)])
    crm, erp, mes = twins["crm"], twins["erp"], twins["mes"]  # type: ignore[index]
    crm.edit("CASE-1", "supervisor@example.com", **{"contact.name": "Ada Lovelace"})
    erp.edit(erp_of[case["CASE-2"]], "accounting", **{"party.name": "王晓明"})
    now = datetime.now(UTC)
    crm.edit("CASE-3", "agent@example.com", at=now, **{"contact.phone": "+1 555 0333"})
    erp.edit(erp_of[case["CASE-3"]], "admin", at=now + timedelta(seconds=1), **{"party.phone": "+1 555 0999"})
    erp.create("accounting", local_id="ERP-ORPHAN", **{"party.name": "Nobody"})
    mes.delete(mes_of[case["CASE-4"]])
    mes.edit(mes_of[case["CASE-6"]], "shopfloor-lead", **{"production.notes": "impeller cracked"})
    _worker(team, "worker-a")
    _worker(team, "worker-b")

    report = _run_on_workers(team, pg_url)
    assert report["run"]["state"] == "done", report["run"]["error"]
    got = {(i["kind"], i["ticket_id"], i["system"], i["field"], i["action"]) for i in report["items"]}
    assert got == {
        ("missed_change", case["CASE-1"], "crm", "customer.name", "repaired"),
        ("drift", case["CASE-2"], "erp", "customer.name", "repaired"),
        ("missed_change", case["CASE-3"], "erp", "customer.phone", "repaired"),
        ("conflict", case["CASE-3"], "crm", "customer.phone", "repaired"),
        ("orphan", None, "erp", None, "reported"),
        ("dangling", case["CASE-4"], "mes", None, "reported"),
        ("drift", case["CASE-6"], "mes", "fault.description", "awaiting_review"),
    }, report["items"]
    assert sorted(nc["system"] for nc in report["not_checked"]) == ["courier", "wms"]
    assert report["summary"]["tickets"] == TICKETS
    phone = [i for i in report["items"] if i["field"] == "customer.phone"]
    assert all(i["rule"] == "author_rank" for i in phone)

    def repaired() -> bool:
        return (erp.value(erp_of[case["CASE-1"]], "party.name") == "Ada Lovelace"
                and erp.value(erp_of[case["CASE-2"]], "party.name") == "Customer 2"
                and crm.value("CASE-3", "contact.phone") == "+1 555 0999")

    wait_until(repaired, 60, 0.3, "the repairs to reach the twins through the deliveries")
    again = _run_on_workers(team, pg_url)
    assert not [i for i in again["items"] if i["action"] in ("repaired", "would_repair")], again["items"]
    assert {i["kind"] for i in again["items"]} == {"orphan", "dangling", "drift"}
