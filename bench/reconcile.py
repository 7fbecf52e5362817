"""Reconciliation at scale: tickets x 5 systems of synthetic copies (every canonical field, Chinese text
included) with 1% drift, served through the generic connector's bulk-export path by a local export server
(its own process), reconciled by a full run in a fresh hub process. Prints, from one run:

- the hub's run: copies compared per second, its CPU seconds and peak RSS, time per phase (from its log);
- the floor: the same pages read and parsed by bare httpx + orjson with no comparison (CPU, rate);
- on a sample: hash-first (fingerprints, deepdiff only where they differ) against deepdiff on every pair.

Targets (issue #14, on this 2-core machine, at 1,000,000 tickets): the whole run <= 5 minutes of hub CPU, peak
RSS <= 512 MiB, throughput >= 0.5x the floor, hash-first >= 30x deepdiff. Nothing here asserts on time.

    python bench/reconcile.py [--tickets 1000000] [--sample 20000] [--drift 0.01] [--page 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SYSTEMS = ("crm", "erp", "mes", "wms", "courier")
T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
NAMES = ["王小明", "李娜", "Ada Lovelace", "张伟", "Grace Hopper", "陈静", "Linus", "刘洋"]
STATUSES = ["new", "assigned", "in_repair", "waiting_parts", "ready_to_ship", "shipped", "resolved"]
SECRET = "bench-webhook-secret"
TOKEN = "bench-export-token"


def golden(i: int) -> dict[str, object]:
    """Ticket i's canonical values: every canonical field, some Chinese."""
    from hub.core.canonical import normalize

    return {name: normalize(name, value) for name, value in _raw(i).items()}


def _raw(i: int) -> dict[str, object]:
    name = NAMES[i % len(NAMES)]
    return {"customer.name": f"{name} {i}", "customer.phone": f"+86 10 {i % 10000:04d} {i % 9973:04d}",
            "customer.email": f"c{i}@example.com", "customer.address": f"北京市朝阳区建国路{i % 500}号",
            "product.serial": f"SN-{i:08d}", "product.model": f"PUMP-{i % 40}",
            "fault.description": f"泵{i % 7}号 jams at column {i % 13}", "status": STATUSES[i % len(STATUSES)],
            "parts.reserved": i % 3 == 0, "production.progress": (i * 7) % 101,
            "shipment.carrier": "shunfeng", "shipment.waybill": f"SF{i:012d}", "shipment.status": "delivered",
            "shipment.delivered_at": (T0 + timedelta(days=3)).isoformat().replace("+00:00", "Z"),
            "billing.amount": f"{(i % 900) + 100}.50"}


def owner_of(mappings, name: str) -> str:  # type: ignore[no-untyped-def]
    owners = sorted(mappings.owners(name))
    return owners[0] if owners else "crm"


# ---- the world: golden records in the hub's database --------------------------------------------------

def build_database(url: str, tickets: int, mappings) -> None:  # type: ignore[no-untyped-def]
    """The golden records, through the driver's executemany with each value bound as the store's column types
    bind it (the same rows as the store writes, several times faster to build at a million)."""
    from hub.store.engine import make_engine
    from hub.store.migrate import upgrade
    from hub.store.tables import field_values, xrefs
    from hub.store.tables import tickets as tickets_table

    engine = make_engine(url)
    upgrade(engine)

    def statement(table):  # type: ignore[no-untyped-def]
        columns = list(table.c)
        binds = [c.type.dialect_impl(engine.dialect).bind_processor(engine.dialect) or (lambda v: v) for c in columns]
        marks = ", ".join("?" * len(columns))
        sql = f"INSERT INTO {table.name} ({', '.join(c.name for c in columns)}) VALUES ({marks})"
        return sql, [c.name for c in columns], binds

    def rows(names, binds, dicts):  # type: ignore[no-untyped-def]
        return [tuple(bind(d.get(name)) for name, bind in zip(names, binds, strict=True)) for d in dicts]

    t_sql, t_names, t_binds = statement(tickets_table)
    x_sql, x_names, x_binds = statement(xrefs)
    f_sql, f_names, f_binds = statement(field_values)
    owners = {name: owner_of(mappings, name) for name in _raw(0)}
    batch = 5000
    with engine.begin() as conn:
        cursor = conn.connection.cursor()
        for start in range(0, tickets, batch):
            ids = range(start, min(tickets, start + batch))
            cursor.executemany(t_sql, rows(t_names, t_binds, [
                {"ticket_id": tid(i), "business_code": "SVC", "created_at": T0, "updated_at": T0} for i in ids]))
            cursor.executemany(x_sql, rows(x_names, x_binds, [
                {"system": s, "local_id": f"{s.upper()}-{i}", "ticket_id": tid(i), "created_at": T0}
                for i in ids for s in SYSTEMS]))
            values = []
            for i in ids:
                for name, value in golden(i).items():
                    owner = owners[name]
                    values.append({"ticket_id": tid(i), "field": name, "value": value, "source_system": owner,
                                   "author": "agent@example.com", "author_rank": 50,
                                   "system_rank": mappings.systems[owner].rank, "source_modified_at": T0,
                                   "received_at": T0, "event_id": f"{owner}:seed-{i}"})
            cursor.executemany(f_sql, rows(f_names, f_binds, values))
    engine.dispose()


def tid(i: int) -> str:
    return f"20261101-SVC-{i:07d}"


# ---- the export server (its own process) --------------------------------------------------------------

def serve(port: int, tickets: int, drift: float, mappings_dir: str) -> None:
    from hub.config import load_settings
    from hub.mapping_files import load_mappings

    settings = load_settings(None, environ={})
    mappings = load_mappings(Path(mappings_dir), settings.mapping_names())
    rng = random.Random(11)
    drifted = {s: set(rng.sample(range(tickets), int(tickets * drift))) for s in SYSTEMS}

    def record(system: str, i: int) -> dict[str, object]:
        values = golden(i)
        fields: dict[str, object] = {}
        for name, fm in mappings.systems[system].fields.items():
            value = values[name]
            if i in drifted[system] and name == next(iter(mappings.systems[system].fields)):
                value = f"{value}（改）" if isinstance(value, str) else value
            node = fields
            *parents, leaf = fm.system_field.split(".")
            for part in parents:
                node = node.setdefault(part, {})  # type: ignore[assignment]
            try:
                node[leaf] = fm.to_system(value, system) if value == values[name] else value  # type: ignore[arg-type]
            except Exception:  # noqa: BLE001 (a value the system would refuse: send it as it is)
                node[leaf] = value
        return {"id": f"{system.upper()}-{i}", "modified_at": "2026-11-01T08:00:00Z", "author": "agent@example.com",
                "fields": fields}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            url = urlparse(self.path)
            system = url.path.strip("/").split("/")[0]
            query = parse_qs(url.query)
            start = int(query.get("cursor", ["0"])[0] or 0)
            limit = int(query.get("limit", ["1000"])[0])
            end = min(tickets, start + limit)
            body = orjson.dumps({"records": [record(system, i) for i in range(start, end)],
                                 "next_cursor": str(end) if end < tickets else None})
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


# ---- the floor: bare httpx + orjson over the same pages ----------------------------------------------

def floor(port: int, page: int) -> tuple[float, float, int]:
    import httpx

    started, cpu = time.perf_counter(), time.process_time()
    records = 0
    with httpx.Client(timeout=60) as client:
        for system in SYSTEMS:
            cursor = ""
            while True:
                data = orjson.loads(client.get(f"http://127.0.0.1:{port}/{system}/export",
                                               params={"limit": page, "cursor": cursor}).content)
                records += len(data["records"])
                if not data["next_cursor"]:
                    break
                cursor = data["next_cursor"]
    return time.perf_counter() - started, time.process_time() - cpu, records


# ---- the hub's run (a fresh process, so that its CPU and RSS are its own) ------------------------------

def hub_run(config: str, profile: bool = False) -> None:
    from hub.bootstrap import bootstrap, start_runtime
    from hub.config import load_settings
    from hub.usecases.reconcile import ReconcileRequest, report_dir, run_reconcile, write_reports

    phases: dict[str, float] = {}
    peaks: dict[str, float] = {}  # peak RSS (MiB) reached by the end of each phase

    class Phases:
        last = time.process_time()

        def read(self, system: str, records: int) -> None:
            now = time.process_time()
            phases[f"read {system}"] = phases.get(f"read {system}", 0) + now - self.last
            self.last = now
            peaks["read"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

        def compared(self, tickets: int, copies: int, discrepancies: int) -> None:
            now = time.process_time()
            phases["compare"] = phases.get("compare", 0) + now - self.last
            self.last = now
            peaks["compare"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    hub = bootstrap(load_settings(Path(config)))
    runtime = start_runtime(hub)
    started = time.perf_counter()
    if profile:
        import cProfile
        import io
        import pstats

        profiler = cProfile.Profile(time.process_time)  # CPU, not wall: the machine is shared
        profiler.enable()
    phase = Phases()
    outcome = run_reconcile(hub, runtime.connector, ReconcileRequest(full=True, dry_run=True), phase)
    now = time.process_time()  # orphans, dangling links, the run closed and its summary
    phases["finish"], phase.last = now - phase.last, now
    peaks["finish"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    write_reports(outcome.report, report_dir(hub))  # as the nightly run does: JSON, CSV and HTML files
    phases["report files"] = time.process_time() - phase.last
    usage = resource.getrusage(resource.RUSAGE_SELF)
    if profile:
        profiler.disable()
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(30)
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(45)
        print("PROFILE\n" + text.getvalue())
    print(json.dumps({"wall": time.perf_counter() - started, "cpu": usage.ru_utime + usage.ru_stime,
                      "rss_mib": usage.ru_maxrss / 1024, "copies": outcome.report.summary.copies_compared,
                      "discrepancies": outcome.report.summary.discrepancies, "phases": phases, "peaks": peaks,
                      "not_checked": [nc.model_dump() for nc in outcome.report.not_checked]}))


# ---- hash-first against deepdiff ---------------------------------------------------------------------

def hash_vs_deepdiff(sample: int, drift: float) -> tuple[float, float, int]:
    from deepdiff import DeepDiff

    from reconcile.compare import differing_fields
    from reconcile.fingerprint import fingerprint

    rng = random.Random(5)
    pairs = []
    for i in range(sample):
        expected = golden(i)
        actual = dict(expected)
        if rng.random() < drift:
            actual["customer.name"] = f"{actual['customer.name']}（改）"
        pairs.append((expected, actual, fingerprint(actual)))  # the copy's print is stored when it is read
    started = time.process_time()
    hashed = sum(bool(differing_fields(e, a, None, p)) for e, a, p in pairs)
    hash_cpu = time.process_time() - started
    started = time.process_time()
    deep = sum(bool(DeepDiff(e, a, ignore_order=True)) for e, a, _ in pairs)
    deep_cpu = time.process_time() - started
    assert hashed == deep
    return hash_cpu, deep_cpu, hashed


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tickets", type=int, default=1_000_000)
    parser.add_argument("--sample", type=int, default=20_000)
    parser.add_argument("--drift", type=float, default=0.01)
    parser.add_argument("--page", type=int, default=1000)
    parser.add_argument("--profile", action="store_true", help="run the hub under cProfile; print the top 25")
    parser.add_argument("--folder", type=Path, help="keep the database here and reuse it when it is already built "
                        "for the same number of tickets (it grows by each run's reports)")
    args = parser.parse_args()

    from hub.config import load_settings
    from hub.mapping_files import DEFAULT_DIR, load_mappings

    mappings = load_mappings(DEFAULT_DIR, load_settings(None, environ={}).mapping_names())
    folder = args.folder or Path(tempfile.mkdtemp(prefix="th-bench-reconcile-"))
    folder.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{folder / 'hub.db'}"
    print(f"reconciliation bench: {args.tickets:,} tickets x {len(SYSTEMS)} systems, {args.drift:.0%} drift "
          f"(in {folder})", flush=True)
    built = folder / f"built-{args.tickets}"
    if not built.exists():
        (folder / "hub.db").unlink(missing_ok=True)
        started = time.perf_counter()
        build_database(url, args.tickets, mappings)
        built.touch()
        print(f"  built the golden records in {time.perf_counter() - started:.0f} s", flush=True)
    print(f"  database: {(folder / 'hub.db').stat().st_size / 2**20:,.0f} MiB", flush=True)

    port = free_port()
    server = subprocess.Popen([sys.executable, __file__, "_serve", str(port), str(args.tickets), str(args.drift),
                               str(DEFAULT_DIR)])
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        wall, cpu, records = floor(port, args.page)
        print(f"  floor (bare httpx + orjson, no comparison): {records:,} records, {records / wall:,.0f}/s, "
              f"{cpu:.1f} s CPU", flush=True)

        config = folder / "tickethub.toml"
        lines = [f'[hub]\ndatabase_url = "{url}"\ndata_dir = "{folder / "var"}"\n']
        for system in SYSTEMS:
            lines.append(f'[systems.{system}]\norigin = {"true" if system == "crm" else "false"}\n'
                         f'base_url = "http://127.0.0.1:{port}/{system}/hub"\n'
                         f'export_url = "http://127.0.0.1:{port}/{system}/export"\nexport_page_size = {args.page}\n'
                         'webhook_secrets_env = "BENCH_SECRET"\ncredentials_env = "BENCH_TOKEN"\n')
        config.write_text("\n".join(lines))
        env = {**os.environ, "BENCH_SECRET": SECRET, "BENCH_TOKEN": TOKEN, "TICKETHUB_API_TOKEN": "x",
               "TICKETHUB_BROKER_URL": "memory://"}
        run = subprocess.run([sys.executable, __file__, "_hub", str(config), "profile" if args.profile else ""],
                             capture_output=True, text=True, env=env)
        if run.returncode != 0:
            print(run.stderr[-3000:])
            raise SystemExit("the hub's run failed")
        result = json.loads(run.stdout.strip().splitlines()[-1])
        rate = result["copies"] / result["wall"]
        print(f"  hub (full run, dry): {result['copies']:,} copies in {result['wall']:.0f} s = {rate:,.0f} copies/s "
              f"({rate / (records / wall):.2f}x the floor; target >= 0.5x)")
        print(f"    hub CPU {result['cpu']:.0f} s (target at 1M: <= 300 s), peak RSS {result['rss_mib']:.0f} MiB"
              f" (target <= 512), discrepancies {result['discrepancies']:,}, not checked {result['not_checked']}")
        for phase, seconds in sorted(result["phases"].items(), key=lambda kv: -kv[1]):
            print(f"    {phase:<14} {seconds:7.1f} s CPU")
        print("    peak RSS by the end of: " + ", ".join(f"{k} {v:.0f} MiB" for k, v in result["peaks"].items())
              + f", the report files {result['rss_mib']:.0f} MiB")
        if args.profile:
            print(run.stdout.rsplit("PROFILE\n", 1)[-1].rsplit("\n{", 1)[0][:16000])
    finally:
        server.terminate()
        server.wait()

    hash_cpu, deep_cpu, differing = hash_vs_deepdiff(args.sample, args.drift)
    print(f"  compare {args.sample:,} pairs ({differing} differ): hash-first {hash_cpu:.2f} s, deepdiff on every pair "
          f"{deep_cpu:.2f} s = {deep_cpu / hash_cpu:.0f}x (target >= 30x)")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_serve":
        serve(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5])
    elif len(sys.argv) > 1 and sys.argv[1] == "_hub":
        hub_run(sys.argv[2], len(sys.argv) > 3 and sys.argv[3] == "profile")
    else:
        main()
