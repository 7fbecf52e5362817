"""How fast the hub polls a real Tryton 8.2 and applies what it reads, and how much memory a poll takes.

A real trytond (tests/peers/tryton.py: installed once under .peers/, started on loopback) gets N production
orders (default 10,000), half of them then edited, so that both of the poller's paths are read: records
never edited (null write_date, found by create_date) and edited ones. The MES is configured as a ticket
origin, so every order opens a ticket and applying does the whole work of an event. Measured in one run:

- baseline: the same records read with plain `search_read` pages of the same size, no hub;
- poll: `hub.usecases.poll.poll_system` from an empty watermark — keyset pages, one inbox event per record
  version, in transactions of 500 — records/s and the ratio to the baseline;
- apply: `hub.usecases.process.process_event` for each stored event (find or create the ticket, apply, save the
  record, audit and outbox) — records/s;
- an idle poll: nothing changed since, only the overlap window is read again;
- peak memory: tracemalloc's peak during the poll (Python allocations) and the process's max RSS.

    python bench/poll.py [--records 10000] [--page 500]

Results go to stdout, progress to stderr. The Tryton server and the temporary hub database are removed on exit.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from connectors.tryton.connector import TrytonConnector  # noqa: E402
from hub.bootstrap import bootstrap  # noqa: E402
from hub.config import load_settings  # noqa: E402
from hub.logs import configure_logging  # noqa: E402
from hub.store.engine import make_engine  # noqa: E402
from hub.store.migrate import upgrade  # noqa: E402
from hub.store.tables import inbox_events  # noqa: E402
from hub.usecases.poll import poll_system  # noqa: E402
from hub.usecases.process import process_event  # noqa: E402
from tests.peers.tryton import running_tryton  # noqa: E402


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def make_orders(tryton, count: int, batch: int = 500) -> None:  # type: ignore[no-untyped-def]
    pump, unit = tryton.ids["pump"], tryton.ids["unit"]
    ids: list[int] = []
    for start in range(0, count, batch):
        values = [{"product": pump, "quantity": 1.0, "unit": unit, "reference": f"BENCH-{n:06d}"}
                  for n in range(start, min(count, start + batch))]
        ids += tryton.call("planner", "model.production.create", [values, {"company": 1}])
    edited = ids[::2]
    for start in range(0, len(edited), batch):
        tryton.call("planner", "model.production.write", [edited[start:start + batch], {"quantity": 2.0},
                                                          {"company": 1}])


def config(folder: Path, tryton) -> Path:  # type: ignore[no-untyped-def]
    maps = folder / "maps"  # the shipped MES mapping, less product.model (no CRM here to own it)
    maps.mkdir()
    shipped = (Path(__file__).resolve().parents[1] / "mappings" / "tryton_mes.toml").read_text()
    (maps / "tryton_mes.toml").write_text(shipped.replace('[fields."product.model"]\nfield = "product.code"\n'
                                                          'direction = "write"\n', ""))
    path = folder / "tickethub.toml"
    path.write_text(f"""[hub]
database_url = "sqlite:///{folder / 'hub.db'}"
mappings_dir = "{maps}"
[systems.mes]
type = "tryton"
origin = true
base_url = "{tryton.url}"
database = "{tryton.database}"
model = "production"
mapping = "tryton_mes"
hub_author = "tickethub"
credentials_env = "TRYTON_PASSWORD"
""")
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--page", type=int, default=500)
    args = parser.parse_args()
    configure_logging("WARNING")

    with tempfile.TemporaryDirectory() as tmp, running_tryton(Path(tmp) / "tryton") as tryton:
        folder = Path(tmp)
        say(f"creating {args.records} production orders in Tryton ...")
        started = time.perf_counter()
        make_orders(tryton, args.records)
        say(f"  done in {time.perf_counter() - started:.1f} s")

        settings = load_settings(config(folder, tryton), environ={})
        engine = make_engine(settings.hub.database_url)
        upgrade(engine)
        hub = bootstrap(settings, engine=engine)
        client = httpx.Client(timeout=60)
        connector = TrytonConnector("mes", tryton.url, tryton.database, "tickethub", tryton.users["tickethub"],
                                    "production", client, page_size=args.page)

        say("baseline: plain search_read pages ...")
        session = connector.session
        started = time.perf_counter()
        seen = offset = 0
        while True:
            rows = session.call("model.production.search_read", [], offset, args.page, [["id", "ASC"]],
                                connector.spec.read_fields, session.context())
            seen += len(rows)
            offset += args.page
            if len(rows) < args.page:
                break
        baseline = seen / (time.perf_counter() - started)

        say("poll from an empty watermark ...")
        started = time.perf_counter()
        result = poll_system(hub, "mes", connector)
        poll_seconds = time.perf_counter() - started

        say("the same poll into a second, empty hub database, under tracemalloc (which slows it) ...")
        other = folder / "other"
        other.mkdir()
        other_settings = load_settings(config(other, tryton), environ={})
        other_engine = make_engine(other_settings.hub.database_url)
        upgrade(other_engine)
        tracemalloc.start()
        poll_system(bootstrap(other_settings, engine=other_engine), "mes", connector)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        other_engine.dispose()

        say("apply every stored event ...")
        with engine.connect() as conn:
            events = [row[0] for row in conn.execute(inbox_events.select().with_only_columns(
                inbox_events.c.event_id).where(inbox_events.c.system == "mes").order_by(inbox_events.c.received_at))]
        started = time.perf_counter()
        states: dict[str, int] = {}
        for event_id in events:
            state = process_event(hub, event_id, lambda _system: connector).state
            states[state] = states.get(state, 0) + 1
        apply_seconds = time.perf_counter() - started

        started = time.perf_counter()
        idle = poll_system(hub, "mes", connector)
        idle_seconds = time.perf_counter() - started

        rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"Tryton 8.2 on loopback, {args.records} production orders ({args.records // 2} of them edited),"
              f" pages of {args.page}")
        print(f"  baseline  plain search_read      {baseline:8.0f} records/s")
        print(f"  poll      read + store in inbox  {result.seen / poll_seconds:8.0f} records/s"
              f"   ({result.seen / poll_seconds / baseline:.2f}x baseline; {result.accepted} events)")
        print(f"  apply     process every event    {len(events) / apply_seconds:8.0f} records/s"
              f"   ({', '.join(f'{k} {v}' for k, v in sorted(states.items()))})")
        print(f"  idle poll nothing changed        {idle_seconds * 1000:8.0f} ms  ({idle.seen} re-read in the"
              f" overlap window, {idle.accepted} stored)")
        print(f"  memory    tracemalloc peak during the poll {peak / 2**20:.1f} MiB; process max RSS {rss_mib:.0f} MiB")
        client.close()
        engine.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
