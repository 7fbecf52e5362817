"""How long the hub takes to recover from crashes and a database restart, each beside the baseline it replaces.

Scenarios (real processes through the e2e harness, receivers on loopback, the default 120 s lease):
- embedded: `tickethub up` SIGKILLed while the ERP is answering a write (5 s); started again. Time from the
  restart to the write in flight landing, identical, against the lease (what recovery took before workers
  had heartbeats: the write waited out `lease_seconds`).
- team: the deliveries worker (PostgreSQL + RabbitMQ) SIGKILLed the same way, started again; likewise.
- team, no restart: the deliveries worker SIGKILLed while a second worker runs: its write is taken back by
  the sweeper once its heartbeat is `worker_dead_after_seconds` old.
- team: PostgreSQL stopped for 4 s under 20 webhooks/s and started again: from its start to the last event
  delivered; webhooks answered 503 meanwhile (and accepted on retry), 500s (must be 0).

    python bench/faults.py [--only embedded|team]

Needs PostgreSQL (trust auth on 127.0.0.1:5432, `pg_ctlcluster` to restart it) and RabbitMQ for team mode.
Prints one line per scenario; the README's Operations section keeps the latest figures.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.e2e.harness import HubProcesses, Receiver, crm_case, wait_until  # noqa: E402

ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
RABBIT = "amqp://guest:guest@127.0.0.1:5672//"
LEASE = 120.0


def _delivered(hub: HubProcesses, system: str) -> set[str]:
    return {d["ticket_id"] for d in hub.deliveries(system=system, state="delivered", limit=1000)}


def _hub(workdir: Path, team: bool, receivers: dict[str, Receiver]) -> tuple[HubProcesses, str | None]:
    database = None
    if team:
        database = f"bench_faults_{uuid.uuid4().hex[:8]}"
        with create_engine(ADMIN, isolation_level="AUTOCOMMIT").connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{database}"'))
        url = ADMIN.rsplit("/", 1)[0] + f"/{database}"
    else:
        url = f"sqlite:///{workdir / 'hub.db'}"
    hub = HubProcesses(workdir, url, RABBIT if team else None, receivers)
    hub.write_config(lease_seconds=LEASE)
    migrated = hub.run_cli("db", "upgrade")
    assert migrated.returncode == 0, migrated.stderr
    return hub, database


def _drop(database: str | None) -> None:
    if database:
        with create_engine(ADMIN, isolation_level="AUTOCOMMIT").connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))


def crash(team: bool, restart: bool = True) -> dict[str, Any]:
    receivers = {name: Receiver(name).start() for name in ("erp", "mes", "wms", "courier")}
    with tempfile.TemporaryDirectory() as tmp:
        hub, database = _hub(Path(tmp), team, receivers)
        try:
            receivers["erp"].script = [(200, 5.0)]
            if team:
                hub.start("api", "worker", "beat")
            else:
                hub.start("up")
            hub.send("evt-1", crm_case("CASE-1", 0, contact={"phone": "+44 1111 1111"}))
            wait_until(lambda: receivers["erp"].bodies(), what="the write in flight")
            if not team:  # timed from the restart command: process start-up is part of recovering
                hub.kill_group("up")
                began = time.monotonic()
                hub.start("up")
            elif restart:
                hub.kill("worker")
                began = time.monotonic()
                hub.start("worker")
            else:  # a second worker starts, then the one holding the write dies: the sweeper takes it back
                hub.procs["first"] = hub.procs.pop("worker")
                hub.start("worker")
                time.sleep(2)
                hub.kill("first")
                began = time.monotonic()
            wait_until(lambda: _delivered(hub, "erp"), timeout=LEASE + 60, what="the write to land")
            took = time.monotonic() - began
            bodies = receivers["erp"].bodies()
            return {"seconds": took, "identical": len(bodies) == 2 and bodies[0] == bodies[1]}
        finally:
            hub.stop()
            _drop(database)
            for receiver in receivers.values():
                receiver.stop()


def database_restart(total: int = 200) -> dict[str, Any]:
    receivers = {name: Receiver(name).start() for name in ("erp", "mes", "wms", "courier")}
    cluster = subprocess.run(["ls", "/etc/postgresql"], capture_output=True, text=True, check=True).stdout.split()[0]
    with tempfile.TemporaryDirectory() as tmp:
        hub, database = _hub(Path(tmp), True, receivers)
        statuses: list[int] = []
        try:
            hub.start("api", "worker", "beat")

            def send_all() -> None:
                for n in range(total):
                    while True:
                        try:
                            case = crm_case(f"CASE-{n}", 0, contact={"phone": f"+44 9999 {n:04d}"})
                            answer = hub.send(f"evt-{n}", case)
                        except Exception:  # noqa: BLE001
                            time.sleep(0.2)
                            continue
                        statuses.append(answer.status_code)
                        if answer.status_code == 202:
                            break
                        time.sleep(0.3)
                    time.sleep(0.05)

            sender = threading.Thread(target=send_all)
            sender.start()
            wait_until(lambda: len(statuses) >= 40, what="load")
            subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", cluster, "main", "stop", "-m", "fast"],
                           check=True)
            time.sleep(4)
            subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", cluster, "main", "start"], check=True)
            back = time.monotonic()
            sender.join(300)
            wait_until(lambda: len(_delivered(hub, "erp")) == total, timeout=180, what="convergence")
            alive = all(proc.poll() is None for proc in hub.procs.values())
            return {"seconds": time.monotonic() - back, "503": statuses.count(503), "500": statuses.count(500),
                    "accepted": statuses.count(202), "alive": alive}
        finally:
            hub.stop()
            _drop(database)
            for receiver in receivers.values():
                receiver.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("embedded", "team"))
    only = parser.parse_args().only
    if only in (None, "embedded"):
        r = crash(team=False)
        print(f"embedded: up SIGKILLed, restarted: write in flight landed after {r['seconds']:.1f} s "
              f"(lease {LEASE:.0f} s: {r['seconds'] / LEASE:.2f}x), identical: {r['identical']}")
    if only in (None, "team"):
        r = crash(team=True)
        print(f"team: deliveries worker SIGKILLed, restarted: landed after {r['seconds']:.1f} s "
              f"({r['seconds'] / LEASE:.2f}x the lease), identical: {r['identical']}")
        r = crash(team=True, restart=False)
        print(f"team: deliveries worker SIGKILLed, another running: landed after {r['seconds']:.1f} s "
              f"({r['seconds'] / LEASE:.2f}x the lease), identical: {r['identical']}")
        r = database_restart()
        print(f"team: PostgreSQL stopped 4 s under load: converged {r['seconds']:.1f} s after its start; "
              f"503s {r['503']}, 500s {r['500']}, accepted {r['accepted']}, every process alive: {r['alive']}")


if __name__ == "__main__":
    main()
