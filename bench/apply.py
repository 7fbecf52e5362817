"""How fast changes go through the store, as a ratio against plain SQLAlchemy inserts of the same rows.

For each database (SQLite file; PostgreSQL if reachable): 10,000 CRM cases open tickets, then
100,000 single-field changes (phone, name, status, address, fault in turn, spread over the tickets,
some out of order and so stale) go through the real path: accept into the inbox, then process
(find ticket, lock, apply, save record + audit + outbox). Baselines in the same run and database:
the same 100,000 rows inserted with plain SQLAlchemy (a) one transaction per row, (b) one
executemany in one transaction. Prints changes/s and the ratios. Absolute times vary with the machine.

    python bench/apply.py [--changes 100000] [--tickets 10000] [--pg URL | --no-pg]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, Text, create_engine, insert, text

from hub.bootstrap import bootstrap
from hub.config import load_settings
from hub.store.engine import make_engine
from hub.store.migrate import upgrade
from hub.usecases.ingest import accept_event
from hub.usecases.process import process_event

T0 = datetime(2026, 2, 13, 8, 0, tzinfo=UTC)
STATUSES = ["New", "Assigned", "In Repair", "Pending", "Ready", "Shipped"]


def change_payloads(changes: int, tickets: int, seed: int = 7) -> list[tuple[str, dict]]:
    rng = random.Random(seed)
    out = []
    for i in range(changes):
        case = i % tickets
        kind = (i // tickets) % 5
        fields: dict = [
            {"contact": {"phone": f"+44 20 {rng.randint(1000, 9999)} {i % 10000:04d}"}},
            {"contact": {"name": f"Customer {case} v{i}"}},
            {"case": {"status": STATUSES[i % len(STATUSES)]}},
            {"contact": {"address": f"{i} High Street"}},
            {"case": {"description": f"fault report revision {i}"}},
        ][kind]
        jitter = rng.randint(-120, 120)  # some arrive out of order and are stale
        modified = T0 + timedelta(seconds=60 * (i // tickets) + jitter, minutes=10)
        out.append((f"c{i}", {"local_id": f"CASE-{case}", "modified_at": modified.isoformat(),
                              "author": "agent@example.com", "fields": fields}))
    return out


def run_hub(url: str, changes: int, tickets: int) -> tuple[float, float]:
    engine = make_engine(url)
    upgrade(engine)
    hub = bootstrap(load_settings(None, environ={}), engine=engine)
    for n in range(tickets):
        event_id, _ = accept_event(hub, "crm", f"open-{n}", {
            "local_id": f"CASE-{n}", "modified_at": T0.isoformat(), "author": "agent@example.com",
            "fields": {"contact": {"name": f"Customer {n}"}, "case": {"status": "New"}}})
        process_event(hub, event_id)
    payloads = change_payloads(changes, tickets)
    started = time.perf_counter()
    ids = []
    for external_id, payload in payloads:
        ids.append(accept_event(hub, "crm", external_id, payload)[0])
    accepted = time.perf_counter()
    for event_id in ids:
        process_event(hub, event_id)
    done = time.perf_counter()
    engine.dispose()
    return changes / (done - started), changes / (done - accepted)


def run_baseline(url: str, changes: int, tickets: int) -> tuple[float, float]:
    engine = create_engine(url)
    metadata = MetaData()
    table = Table(f"bench_plain_{uuid.uuid4().hex[:8]}", metadata,
                  Column("id", Integer, primary_key=True), Column("ticket", String(32)), Column("field", String(64)),
                  Column("value", Text), Column("author", String(255)), Column("modified_at", DateTime(timezone=True)))
    metadata.create_all(engine)
    rows = [{"ticket": p["local_id"], "field": next(iter(p["fields"])), "value": str(p["fields"]),
             "author": p["author"], "modified_at": datetime.fromisoformat(p["modified_at"])}
            for _, p in change_payloads(changes, tickets)]
    started = time.perf_counter()
    for row in rows:
        with engine.begin() as conn:
            conn.execute(insert(table), row)
    per_row = changes / (time.perf_counter() - started)
    with engine.begin() as conn:
        conn.execute(text(f"DELETE FROM {table.name}"))
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(insert(table), rows)
    bulk = changes / (time.perf_counter() - started)
    metadata.drop_all(engine)
    engine.dispose()
    return per_row, bulk


def report(name: str, url: str, changes: int, tickets: int) -> None:
    full, process_only = run_hub(url, changes, tickets)
    per_row, bulk = run_baseline(url, changes, tickets)
    print(f"{name}: {changes:,} changes over {tickets:,} tickets")
    print(f"  hub, accept + process      {full:10,.0f} changes/s")
    print(f"  hub, process only          {process_only:10,.0f} changes/s")
    print(f"  plain insert, 1 txn/row    {per_row:10,.0f} rows/s   hub/plain = {full / per_row:.2f}")
    print(f"  plain insert, executemany  {bulk:10,.0f} rows/s   hub/plain = {full / bulk:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--changes", type=int, default=100_000)
    parser.add_argument("--tickets", type=int, default=10_000)
    parser.add_argument("--pg", default="postgresql+psycopg://root@127.0.0.1:5432/test")
    parser.add_argument("--no-pg", action="store_true")
    args = parser.parse_args()
    import logging

    from hub.logs import configure_logging

    configure_logging("ERROR")
    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        report("SQLite (WAL)", f"sqlite:///{Path(tmp) / 'bench.db'}", args.changes, args.tickets)
    if not args.no_pg:
        database = f"th_bench_{uuid.uuid4().hex[:8]}"
        admin = create_engine(args.pg, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{database}"'))
        try:
            report("PostgreSQL", args.pg.rsplit("/", 1)[0] + f"/{database}", args.changes, args.tickets)
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
