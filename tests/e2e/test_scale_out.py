"""Scale-out proof on one machine: two API processes and three workers against PostgreSQL + RabbitMQ take
5,000 events about 500 tickets from the CRM, the ERP and the MES, sent concurrently (16 threads, alternating
between the APIs, out of order by modified-at, with repeated webhooks), and settle on exactly the golden records
that a single worker (one thread, one API, the events sent one by one) makes of the same events; no subscribed
system is sent the same write twice.

The events come from a seeded random.Random (the same list for both runs):
- 500 CRM cases (the CRM is the ticket origin: its first notice opens the ticket) with contact, product,
  serial number, fault and status `New`. The ERP, MES and WMS receivers answer a ticket's first write with a
  local id of their own (ERP-0042, MES-0042, from the serial number that write carries: the same in both
  runs), which links their record to the ticket;
- once those links exist, 4,500 change notices in shuffled order: CRM contact and fault edits (values that
  come back to earlier ones, authors of different rank, some older than the case itself, some tied on
  modified-at), CRM status chains through the workflow (some refused: a skipped step, a state only the WMS
  reports, a cancellation followed by more claims, `waiting_parts` with or without the ERP's reserved parts as
  evidence), ERP amounts and parts reservations (some carrying a phone the ERP does not own), MES progress
  (which only grows, whatever the order);
- 5% of the webhooks sent a second time with the same webhook-id.
Each ticket's CRM status claims name each status at most once, and the MES reports no status: a claim equal
to a status the hub has just written to that system counts as its echo (README "How a change is applied"), so
whether it is weighed would depend on when that write landed, not on the set of events.

The two runs are made once (a module fixture, about 5 minutes on a quiet 2-core machine), then checked:
1. every event processed, nothing dead or waiting; the golden records (value and provenance: system, author,
   modified-at, event) of both runs equal ticket by ticket (matched by CRM case: ticket IDs differ between
   runs), and equal to what the events come to: each owned field by the README's precedence, worked out here,
   and the status by the workflow's own pure `settle` over the claims;
2. no receiver saw the same webhook-id twice (a duplicate delivery), no delivery was claimed twice;
3. each receiver's last write of each field it is written holds the golden value.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import DBAPIError

from hub.config import load_settings
from hub.core.canonical import FIELDS, format_datetime, normalize
from hub.core.mapping import MappingSet, lookup_path
from hub.core.model import FieldChange, Provenance
from hub.core.signing import sign_standard
from hub.core.workflow import Workflow, add_marks, settle
from hub.mapping_files import load_mappings
from hub.plugins import connector_schemas
from hub.workflow_files import load_workflow
from tests.conftest import _pg_url, services_missing
from tests.e2e.conftest import RABBIT_URL, _answers
from tests.e2e.harness import (
    OUT_SECRET,
    SECRET,
    TOKEN,
    HubProcesses,
    Received,
    Receiver,
    free_port,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.scale]  # outside `make test`: `make test-scale`

SEED = 20261205
TICKETS = 500
CHANGES = 4_500  # distinct change notices after the 500 cases: 5,000 events in all
REPEATED = 0.05  # share of webhooks sent a second time with the same webhook-id
SENDERS = 16  # threads sending webhooks in the scaled run
WORKERS = 3
SYSTEMS = ("crm", "erp", "mes", "wms", "courier")
# waiting for the pipeline: it fails when nothing moved (no event processed, no write delivered, no record linked)
# for STALLED seconds, or after GIVE_UP seconds in all; a slow machine (2 cores, other tests running) only
# takes longer
STALLED = 180.0
GIVE_UP = 1800.0

CRM_AUTHORS = ["agent@example.com"] * 3 + ["supervisor@example.com", "intake-bot"]
ERP_AUTHORS = ["accounting", "accounting", "admin", "erp-sync"]
MES_AUTHORS = ["shopfloor-lead", "mes-terminal-3"]
# each ticket's CRM status claims, in the order they were made (each value at most once per ticket)
STATUS_CHAINS: list[tuple[float, tuple[str, ...]]] = [
    (0.25, ()),
    (0.15, ("Assigned",)),
    (0.15, ("Assigned", "In Repair")),
    (0.15, ("Assigned", "In Repair", "Ready")),
    (0.12, ("Assigned", "In Repair", "Pending")),  # waiting_parts: needs parts reserved by the ERP before it
    (0.05, ("In Repair", "Ready")),
    (0.04, ("Assigned", "Rejected")),
    (0.03, ("Assigned", "Rejected", "In Repair")),  # cancelled is final: the last claim is refused
    (0.03, ("Ready",)),  # new -> ready_to_ship is not allowed
    (0.03, ("Assigned", "Shipped")),  # only the WMS reports shipped
]


# ---- the events ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Event:
    system: str
    webhook_id: str
    case: int  # the ticket it is about, by CRM case number
    local_id: str
    modified_at: datetime
    author: str
    fields: dict[str, Any]
    body: bytes = b""

    @staticmethod
    def make(system: str, webhook_id: str, case: int, modified_at: datetime, author: str,
             fields: dict[str, Any]) -> Event:
        local_id = f"{system.upper() if system != 'crm' else 'CASE'}-{case:04d}"
        stamp = format_datetime(modified_at) if modified_at.microsecond else modified_at.strftime("%Y-%m-%dT%H:%M:%SZ")
        body = json.dumps({"local_id": local_id, "modified_at": stamp, "author": author, "fields": fields},
                          ensure_ascii=False).encode()
        return Event(system, webhook_id, case, local_id, modified_at, author, fields, body)

    @property
    def event_id(self) -> str:
        return f"{self.system}:{self.webhook_id}"


@dataclass
class Scenario:
    cases: list[Event]  # the CRM's first notice of each case
    changes: list[Event]  # everything after, distinct
    first_wave: list[Event]  # the cases as sent: shuffled, with repeats
    second_wave: list[Event]  # the changes as sent: shuffled, with repeats

    @property
    def events(self) -> list[Event]:
        return self.cases + self.changes


def _scenario(seed: int, now: datetime) -> Scenario:
    rng = random.Random(seed)
    base = now.replace(microsecond=0) - timedelta(minutes=55)  # recent: no dwell limit passes during the test
    counter = iter(range(1, 1_000_000))
    opened: dict[int, datetime] = {}
    cases = []
    for case in range(TICKETS):
        opened[case] = base + timedelta(seconds=rng.randrange(0, 180))
        cases.append(Event.make("crm", f"crm-{next(counter):05d}", case, opened[case], rng.choice(CRM_AUTHORS), {
            "contact": {"name": _name(case, 0), "phone": _phone(case, 0), "email": _email(case, 0),
                        "address": _address(case, 0)},
            "case": {"status": "New", "serial_number": f"SN-{case:04d}", "product": rng.choice(MODELS),
                     "description": _fault(case, 0)}}))

    changes: list[Event] = []
    used: dict[tuple[int, str], list[datetime]] = {}

    def when(case: int, system: str, low: float = 1, high: float = 2400, older: float = 0.0) -> datetime:
        """A modified-at for a change: after the case was opened (sometimes before it), sometimes the very
        moment of an earlier change of the same record (a tie), sometimes with milliseconds."""
        earlier = used.setdefault((case, system), [])
        if earlier and rng.random() < 0.08:
            return rng.choice(earlier)
        if rng.random() < older:
            moment = opened[case] - timedelta(seconds=rng.randrange(1, 90))
        else:
            moment = opened[case] + timedelta(seconds=rng.uniform(low, high))
            moment = moment.replace(microsecond=0) if rng.random() < 0.7 else moment.replace(
                microsecond=moment.microsecond // 1000 * 1000)
        earlier.append(moment)
        return moment

    def add(system: str, case: int, moment: datetime, author: str, fields: dict[str, Any]) -> None:
        changes.append(Event.make(system, f"{system}-{next(counter):05d}", case, moment, author, fields))

    weights = [w for w, _ in STATUS_CHAINS]
    for case in range(TICKETS):  # the status chains, each claim later than the one before
        chain = rng.choices([c for _, c in STATUS_CHAINS], weights)[0]
        moment = opened[case]
        for status in chain:
            moment += timedelta(seconds=rng.randrange(60, 600))
            if status == "Pending" and rng.random() < 0.7:  # the ERP reserved the parts before the claim
                reserved = moment - timedelta(seconds=rng.randrange(5, 50))
                add("erp", case, reserved, rng.choice(ERP_AUTHORS), {"sale": {"parts_reserved": True}})
            add("crm", case, moment, rng.choice(CRM_AUTHORS[:4]), {"case": {"status": status}})

    while len(changes) < CHANGES:
        case, kind = rng.randrange(TICKETS), rng.random()
        if kind < 0.40:  # a CRM contact edit: one to three fields, values that may come back
            keys = rng.sample(["name", "phone", "email", "address"], rng.randint(1, 3))
            makers = {"name": _name, "phone": _phone, "email": _email, "address": _address}
            contact = {k: makers[k](case, rng.randrange(3)) for k in keys}
            add("crm", case, when(case, "crm", older=0.04), rng.choice(CRM_AUTHORS), {"contact": contact})
        elif kind < 0.52:
            add("crm", case, when(case, "crm", older=0.04), rng.choice(CRM_AUTHORS),
                {"case": {"description": _fault(case, rng.randrange(4))}})
        elif kind < 0.80:  # the ERP: amount and/or parts; now and then a phone it does not own
            sale: dict[str, Any] = {}
            if rng.random() < 0.7:
                sale["total_amount"] = f"{rng.randrange(0, 400_000) / 100:.2f}"
            if not sale or rng.random() < 0.5:
                sale["parts_reserved"] = rng.random() < 0.6
            fields: dict[str, Any] = {"sale": sale}
            if rng.random() < 0.05:
                fields["party"] = {"phone": f"+86 755 {case:04d} 9999"}
            add("erp", case, when(case, "erp"), rng.choice(ERP_AUTHORS), fields)
        else:  # the MES: progress, which only grows
            add("mes", case, when(case, "mes"), rng.choice(MES_AUTHORS),
                {"production": {"percent_done": rng.randrange(0, 101, 5)}})

    def wave(events: list[Event]) -> list[Event]:
        sent = list(events) + rng.sample(events, round(len(events) * REPEATED))
        rng.shuffle(sent)
        return sent

    return Scenario(cases, changes, wave(cases), wave(changes))


MODELS = ["PX-100", "PX-200", "QZ-7", "QZ-9 Pro"]


def _name(case: int, k: int) -> str:
    return [f"Customer {case:04d}", f"Customer {case:04d} Jr", f"王小明 {case:04d}"][k]


def _phone(case: int, k: int) -> str:
    return f"+86 138 {case:04d} {1111 * (k + 1):04d}"


def _email(case: int, k: int) -> str:
    return f"c{case:04d}.{k}@example.com"


def _address(case: int, k: int) -> str:
    return f"深圳市南山区科技园 {k + 1} 号, unit {case}"


def _fault(case: int, k: int) -> str:
    return ["Crank jams", "Display flickers", "Motor overheats after 10 minutes", "Rattles; case cracked"][k] + \
        f" (case {case})"


# ---- what the events must come to, worked out independently of the pipeline ----------------------

def _expected(scenario: Scenario, mappings: MappingSet, workflow: Workflow) -> dict[int, dict[str, tuple]]:
    """Per case: each golden field (value, system, author, modified-at, event) as the README's rules make it
    from the set of events: owners' changes only; last writer by (modified-at, author rank, system rank, system,
    event, value); production.progress the highest value reported; status settled by the workflow."""
    best: dict[tuple[int, str], tuple[Any, tuple]] = {}
    claims: dict[int, list[FieldChange]] = {}
    marks: dict[int, dict[str, datetime]] = {}
    for event in scenario.events:
        mapping = mappings.systems[event.system]
        provenance = Provenance(event.system, event.author, mapping.author_rank(event.author), mapping.rank,
                                event.modified_at, event.modified_at, event.event_id)
        for name, fm in mapping.fields.items():
            if not fm.reads:
                continue
            found, raw = lookup_path(event.fields, fm.system_field)
            if not found:
                continue
            change = FieldChange(name, normalize(name, fm.to_canonical(raw)), provenance)
            if name == "status":
                claims.setdefault(event.case, []).append(change)
                continue
            if not fm.owner:
                continue  # not_owner: never applied
            if name in workflow.evidence_fields:
                add_marks(marks.setdefault(event.case, {}), [change], workflow.evidence_fields)
            key = (change.value, change.precedence()) if FIELDS[name].monotonic else change.precedence()
            if (event.case, name) not in best or key > best[(event.case, name)][0]:
                best[(event.case, name)] = (key, _golden_tuple(change.value, provenance))
    expected: dict[int, dict[str, tuple]] = {case: {} for case in range(TICKETS)}
    for (case, name), (_, golden) in best.items():
        expected[case][name] = golden
    for case, made in claims.items():
        settled = settle(workflow, made, marks.get(case, {}))
        if settled.winner is not None:
            expected[case]["status"] = _golden_tuple(settled.status, settled.winner.provenance)
        else:  # every claim refused: the initial state, dated by the first claim
            first = min(made, key=FieldChange.precedence).provenance
            expected[case]["status"] = (settled.status, "tickethub", "workflow", format_datetime(first.modified_at),
                                        first.event_id)
    return expected


def _golden_tuple(value: Any, p: Provenance) -> tuple:
    return value, p.system, p.author, format_datetime(p.modified_at), p.event_id


# ---- receivers that give each ticket its own record -----------------------------------------------

@dataclass
class RecordReceiver(Receiver):
    """A subscribed system that keeps one record per ticket: a write for a record it already has (the body's
    local_id) is answered with that id; a ticket's first write creates `<NAME>-<case>` from the serial
    number it carries (so the ids are the same in both runs), or `<NAME>-<ticket id>` without one."""

    links: dict[str, str] = field(default_factory=dict)
    latency: float = 0.01

    def local_id_for(self, body: dict[str, Any]) -> str:
        if body.get("local_id"):
            return str(body["local_id"])
        with self.lock:
            if body["ticket_id"] not in self.links:
                serial = next((v for k, v in body["fields"].items() if k.endswith(".serial")), None)
                suffix = serial.removeprefix("SN-") if isinstance(serial, str) else body["ticket_id"]
                self.links[body["ticket_id"]] = f"{self.name.upper()}-{suffix}"
            return self.links[body["ticket_id"]]

    def start(self) -> RecordReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                raw = self.rfile.read(int(self.headers.get("content-length", 0)))
                body = json.loads(raw)
                with receiver.lock:
                    receiver.received.append(Received(body, {k.lower(): v for k, v in self.headers.items()}, raw))
                answer = json.dumps({"local_id": receiver.local_id_for(body)}).encode()
                time.sleep(receiver.latency)  # a real system takes a moment: writes stay in flight a while
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = _Server(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # up to 3 x 8 worker threads' writes arrive at once


# ---- a deployment: N API processes, M workers, one beat, one database ------------------------------

@dataclass
class Deployment(HubProcesses):
    extra_api_ports: list[int] = field(default_factory=list)

    @property
    def bases(self) -> list[str]:
        return [self.base] + [f"http://127.0.0.1:{port}" for port in self.extra_api_ports]

    def write_config(self, **delivery: float) -> None:
        # the harness's quick recovery settings, but a lease of 30 s, not 6: on a loaded 2-core machine a write
        # (claim, POST, outcome) can take longer than 6 s, and the sweeper would rightly send it again
        settings = {"backoff_base_seconds": 0.3, "backoff_cap_seconds": 2.0, "lease_seconds": 30.0,
                    "redispatch_after_seconds": 3.0, "sweep_interval_seconds": 1.0, "timeout_seconds": 15.0,
                    **delivery}
        lines = ["[hub]", f'database_url = "{self.database_url}"', f'data_dir = "{self.workdir / "var"}"',
                 f'queue_prefix = "{self.queue_prefix}"', f'broker_url = "{self.broker_url}"',
                 # six processes on a PostgreSQL with max_connections = 100 that other tests share
                 "database_pool_size = 4", "database_max_overflow = 8", "",
                 "[reconcile]", "enabled = false", "",
                 "[delivery]", *[f"{k} = {v}" for k, v in settings.items()]]
        for name, receiver in self.receivers.items():
            secrets = "E2E_CRM_SECRETS" if name == "crm" else "E2E_OUT_SECRET"
            lines += ["", f"[systems.{name}]", f'base_url = "{receiver.url}"', f'webhook_secrets_env = "{secrets}"']
            if name == "crm":
                lines.append("origin = true")
        self.config.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def spawn(self, name: str, *args: str) -> None:
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 (kept open for the child)
        self.procs[name] = subprocess.Popen([sys.executable, "-m", "hub", *args], env=self.env(), stdout=log,
                                            stderr=subprocess.STDOUT)

    def start_team(self, apis: int, workers: int, concurrency: int) -> None:
        self.extra_api_ports = [free_port() for _ in range(apis - 1)]
        for n, port in enumerate([self.api_port, *self.extra_api_ports]):
            self.spawn("api" if n == 0 else f"api{n + 1}", "api", "--port", str(port))
        for n in range(workers):
            self.spawn(f"worker{n + 1}", "worker", "--queues", "events,deliveries", "--concurrency", str(concurrency))
        self.spawn("beat", "beat")
        for base in self.bases:
            wait_until(lambda base=base: _answers_health(base), 180, 0.2, f"the API at {base} to answer /healthz")

    def all_running(self) -> bool:
        return all(proc.poll() is None for proc in self.procs.values())


def _answers_health(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


# ---- driving a deployment ---------------------------------------------------------------------------

class Sender:
    """Signed webhooks from any number of threads, each with its own connection pool; a 503 (the database
    away: nothing stored) or a dropped connection is sent again, as a system would."""

    def __init__(self) -> None:
        self.local = threading.local()
        self.clients: list[httpx.Client] = []
        self.lock = threading.Lock()
        self.duplicates = 0

    def client(self) -> httpx.Client:
        if not hasattr(self.local, "client"):
            self.local.client = httpx.Client(timeout=30)
            with self.lock:
                self.clients.append(self.local.client)
        return self.local.client  # type: ignore[no-any-return]

    def post(self, base: str, event: Event) -> None:
        secret = SECRET if event.system == "crm" else OUT_SECRET
        deadline = time.monotonic() + 120
        while True:
            stamp = int(time.time())
            headers = {"content-type": "application/json", "webhook-id": event.webhook_id,
                       "webhook-timestamp": str(stamp),
                       "webhook-signature": sign_standard(secret, event.webhook_id, stamp, event.body)}
            try:
                answer: httpx.Response | None = self.client().post(f"{base}/webhooks/{event.system}",
                                                                   content=event.body, headers=headers)
            except httpx.HTTPError:
                answer = None
            if answer is not None and answer.status_code == 202:
                if answer.json()["duplicate"]:
                    with self.lock:
                        self.duplicates += 1
                return
            if answer is not None and answer.status_code != 503:
                raise AssertionError(f"{event.event_id}: HTTP {answer.status_code} {answer.text}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{event.event_id}: not accepted within 120 s")
            time.sleep(0.5)

    def send_all(self, bases: list[str], events: list[Event], threads: int) -> None:
        if threads == 1:
            for event in events:
                self.post(bases[0], event)
            return
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda item: self.post(bases[item[0] % len(bases)], item[1]), enumerate(events)))

    def close(self) -> None:
        for client in self.clients:
            client.close()


def _query(engine: Engine, sql: str) -> list[Any]:
    """Rows of `sql`, trying again while PostgreSQL is away (another test may restart it)."""
    for attempt in range(60):
        try:
            with engine.connect() as conn:
                return list(conn.execute(text(sql)))
        except DBAPIError:
            if attempt == 59:
                raise
            time.sleep(1)
    raise AssertionError("unreachable")


def _linked_count(engine: Engine) -> int:
    return int(_query(engine, "SELECT count(*) FROM xrefs WHERE system IN ('crm', 'erp', 'mes')")[0][0])


def _progress(engine: Engine) -> tuple[int, ...]:
    """(events processed, events stored, deliveries delivered, deliveries, records linked)."""
    [row] = _query(engine, """SELECT (SELECT count(*) FROM inbox_events WHERE state <> 'received'),
                                     (SELECT count(*) FROM inbox_events),
                                     (SELECT count(*) FROM deliveries WHERE state = 'delivered'),
                                     (SELECT count(*) FROM deliveries),
                                     (SELECT count(*) FROM xrefs)""")
    return tuple(int(n) for n in row)


def _wait_moving(engine: Engine, condition: Callable[[], bool], what: str) -> None:
    """Wait until `condition()`, failing when the pipeline made no progress for STALLED seconds (or after
    GIVE_UP seconds in all)."""
    began = moved = time.monotonic()
    last = _progress(engine)
    while not condition():
        now = time.monotonic()
        if now - moved > STALLED or now - began > GIVE_UP:
            raise AssertionError(f"timed out waiting for {what}: (processed, events, delivered, deliveries, "
                                 f"links) = {last}, unchanged for {now - moved:.0f} s, {now - began:.0f} s in all")
        time.sleep(0.5)
        current = _progress(engine)
        if current != last:
            last, moved = current, time.monotonic()


def _settled(engine: Engine, events: int) -> bool:
    [row] = _query(engine, """SELECT (SELECT count(*) FROM inbox_events),
                                     (SELECT count(*) FROM inbox_events WHERE state = 'received'),
                                     (SELECT count(*) FROM deliveries WHERE state IN ('pending', 'in_flight',
                                                                                         'retry_wait')),
                                     (SELECT count(*) FROM outbox)""")
    return tuple(row) == (events, 0, 0, 0)


@dataclass
class Run:
    """What one deployment made of the scenario."""

    name: str
    golden: dict[int, dict[str, Any]]  # case -> {"ticket_id", "status", "fields": {name: tuple}, "xrefs"}
    seconds: dict[str, float]
    inbox_states: dict[str, int]
    delivery_states: dict[tuple[str, str], int]
    attempt_outcomes: dict[str, int]
    resent: list[tuple[Any, ...]]  # deliveries claimed more than once: (id, system, ticket, attempts, state)
    duplicates_answered: int  # webhooks answered `duplicate: true`
    receivers: dict[str, Receiver]
    log_lines: list[str]  # the deployment's log lines that are not routine (errors, warnings)
    engine: Engine  # its database, kept until the module's tests are done


def _drive(name: str, hub: Deployment, engine: Engine, scenario: Scenario, threads: int,
           log: Callable[[str], None]) -> Run:
    """Send the cases, wait until each is linked to its ticket, its ERP order and its MES order (the ERP's and
    the MES's notices name those records), send the changes, and wait until every event is processed and every
    write delivered; then read the golden records through the API."""
    sender = Sender()
    seconds: dict[str, float] = {}
    started = time.monotonic()
    done = threading.Event()

    def progress() -> None:
        while not done.wait(15):
            row = _progress(engine)
            log(f"{name}: {time.monotonic() - started:.0f} s: {row[0]}/{row[1]} events processed, "
                f"{row[2]}/{row[3]} deliveries delivered")

    threading.Thread(target=progress, daemon=True).start()
    try:
        sender.send_all(hub.bases, scenario.first_wave, threads)
        seconds["cases sent"] = time.monotonic() - started
        log(f"{name}: {len(scenario.first_wave)} case webhooks accepted in {seconds['cases sent']:.1f} s")
        _wait_moving(engine, lambda: _linked_count(engine) >= 3 * TICKETS,
                     "every case linked to its ticket, its ERP order and its MES order")
        lookups = [(system, f"{system.upper()}-{case:04d}") for case in range(TICKETS) for system in ("erp", "mes")]
        with ThreadPoolExecutor(8) as pool:
            found = list(pool.map(lambda key: _lookup(sender.client(), hub.bases[0], *key), lookups))
        assert all(found), [key for key, ok in zip(lookups, found, strict=True) if not ok][:10]
        seconds["cases linked"] = time.monotonic() - started
        log(f"{name}: the cases and their ERP/MES records linked after {seconds['cases linked']:.1f} s")

        sender.send_all(hub.bases, scenario.second_wave, threads)
        seconds["changes sent"] = time.monotonic() - started
        log(f"{name}: {len(scenario.second_wave)} change webhooks accepted after {seconds['changes sent']:.1f} s")
        _wait_moving(engine, lambda: _settled(engine, len(scenario.events)),
                     "every event processed and every write delivered")
        seconds["settled"] = time.monotonic() - started
        log(f"{name}: every event processed and every write delivered after {seconds['settled']:.1f} s")
        with ThreadPoolExecutor(8) as pool:
            records = list(pool.map(lambda case: _golden(sender.client(), hub.bases[case % len(hub.bases)], case),
                                    range(TICKETS)))
    finally:
        done.set()
        sender.close()
    return Run(
        name, dict(zip(range(TICKETS), records, strict=True)), seconds,
        {r[0]: int(r[1]) for r in _query(engine, "SELECT state, count(*) FROM inbox_events GROUP BY state")},
        {(r[0], r[1]): int(r[2]) for r in _query(engine, "SELECT system, state, count(*) FROM deliveries "
                                                          "GROUP BY system, state")},
        {r[0]: int(r[1]) for r in _query(engine, "SELECT outcome, count(*) FROM delivery_attempts GROUP BY outcome")},
        [tuple(r) for r in _query(engine, "SELECT id, system, ticket_id, attempts, state FROM deliveries "
                                          "WHERE attempts > 1 ORDER BY id")],
        sender.duplicates, hub.receivers, _notable_lines(hub), engine)


def _notable_lines(hub: Deployment) -> list[str]:
    """The deployment's log lines at warning or error level, and the exception each traceback ended with."""
    lines = []
    for path in sorted(hub.workdir.glob("*.log")):
        in_traceback = False
        for line in path.read_text(errors="replace").splitlines():
            if '"level": "error"' in line or '"level": "warning"' in line:
                lines.append(f"{path.stem}: {line}")
            elif line.startswith("Traceback"):
                in_traceback = True
            elif in_traceback and line and not line[0].isspace() and ": " in line:
                lines.append(f"{path.stem}: raised {line}")
                in_traceback = False
    return lines


def _lookup(client: httpx.Client, base: str, system: str, local_id: str) -> bool:
    answer = client.get(f"{base}/tickets", params={"system": system, "local_id": local_id},
                        headers={"Authorization": f"Bearer {TOKEN}"})
    return answer.status_code == 200


def _golden(client: httpx.Client, base: str, case: int) -> dict[str, Any]:
    for _ in range(60):
        answer = client.get(f"{base}/tickets", params={"system": "crm", "local_id": f"CASE-{case:04d}"},
                            headers={"Authorization": f"Bearer {TOKEN}"})
        if answer.status_code != 503:
            break
        time.sleep(1)
    assert answer.status_code == 200, answer.text
    ticket = answer.json()
    fields = {name: (f["value"], f["provenance"]["system"], f["provenance"]["author"],
                     f["provenance"]["modified_at"], f["provenance"]["event_id"])
              for name, f in ticket["fields"].items()}
    xrefs = sorted((x["system"], x["local_id"]) for x in ticket["xrefs"] if x["system"] in ("crm", "erp", "mes"))
    return {"ticket_id": ticket["ticket_id"], "status": ticket["status"], "fields": fields, "xrefs": xrefs}


# ---- checks -----------------------------------------------------------------------------------------

def _differences(left: Run, right: Run) -> list[str]:
    found = []
    for case in range(TICKETS):
        a, b = left.golden[case], right.golden[case]
        if a["xrefs"] != b["xrefs"]:
            found.append(f"CASE-{case:04d} links: {a['xrefs']} vs {b['xrefs']}")
        for name in sorted(set(a["fields"]) | set(b["fields"])):
            if a["fields"].get(name) != b["fields"].get(name):
                found.append(f"CASE-{case:04d} ({a['ticket_id']} / {b['ticket_id']}) {name}: "
                             f"{a['fields'].get(name)} vs {b['fields'].get(name)}")
    return found


def _unexpected(run: Run, expected: dict[int, dict[str, tuple]]) -> list[str]:
    found = []
    for case in range(TICKETS):
        got = run.golden[case]["fields"]
        for name in sorted(set(got) | set(expected[case])):
            if got.get(name) != expected[case].get(name):
                found.append(f"{run.name} CASE-{case:04d} ({run.golden[case]['ticket_id']}) {name}: "
                             f"golden {got.get(name)}, expected {expected[case].get(name)}")
        want = [("crm", f"CASE-{case:04d}"), ("erp", f"ERP-{case:04d}"), ("mes", f"MES-{case:04d}")]
        if run.golden[case]["xrefs"] != want:
            found.append(f"{run.name} CASE-{case:04d} links {run.golden[case]['xrefs']}, expected {want}")
    return found


def _duplicate_deliveries(run: Run) -> list[str]:
    """Writes a receiver got more than once: the same webhook-id twice (with what each carried)."""
    found = []
    for name, receiver in run.receivers.items():
        with receiver.lock:
            received = list(receiver.received)
        seen = Counter(r.headers["webhook-id"] for r in received)
        for webhook_id, times in sorted(seen.items()):
            if times > 1:
                bodies = [r.body for r in received if r.headers["webhook-id"] == webhook_id]
                found.append(f"{run.name}: {name} got {webhook_id} {times} times: "
                             + "; ".join(f"ticket {b['ticket_id']} fields {b['fields']}" for b in bodies))
    return found


def _stale_subscribers(run: Run, mappings: MappingSet) -> list[tuple[str, str, str, str]]:
    """Per receiver, ticket and field it subscribes to: the last value written (by delivery order) must be the
    golden value in the system's terms, unless the golden value is the system's own (it is never sent back)."""
    by_ticket = {g["ticket_id"]: (case, g) for case, g in run.golden.items()}
    found = []
    for name, receiver in run.receivers.items():
        written: dict[tuple[str, str], list[tuple[int, Any]]] = {}  # (ticket, field) -> [(delivery, value)]
        with receiver.lock:
            bodies = [r.body for r in receiver.received]
        for body in bodies:
            for system_field, value in body["fields"].items():
                written.setdefault((body["ticket_id"], system_field), []).append((body["delivery_id"], value))
        last = {key: max(writes, key=lambda w: w[0]) for key, writes in written.items()}
        mapping = mappings.systems[name]
        for ticket_id, (case, golden) in sorted(by_ticket.items()):
            for canonical, fm in mapping.fields.items():
                current = golden["fields"].get(canonical)
                if not fm.writes or current is None or current[1] == name:
                    continue
                if name == "crm" and canonical == "status":
                    continue  # the CRM makes the status claims: it is written the status only when one is refused
                want = fm.to_system(current[0], name)
                got = last.get((ticket_id, fm.system_field), (None, "<never written>"))[1]
                if got != want:
                    message = (f"{run.name}: {name} holds {fm.system_field} = {got!r} for CASE-{case:04d} "
                               f"({ticket_id}), golden {canonical} = {current[0]!r} -> {want!r} (from {current[4]} "
                               f"at {current[3]}); written (delivery, value): "
                               f"{sorted(written.get((ticket_id, fm.system_field), []))}")
                    found.append((message, ticket_id, canonical, name))
    return found


def _story(run: Run, ticket_id: str, canonical: str, system: str) -> str:
    """What the database says happened to one field of one ticket, and the ticket's deliveries to one system."""
    history = _query(run.engine, f"""SELECT id, outcome, new_value, system, source_modified_at, event_id, recorded_at,
                                            target_system FROM audit_log
                                     WHERE ticket_id = '{ticket_id}' AND field = '{canonical}' ORDER BY id""")
    sent = _query(run.engine, f"""SELECT id, state, attempts, fields, created_at, updated_at FROM deliveries
                                  WHERE ticket_id = '{ticket_id}' AND system = '{system}' ORDER BY id""")
    return (f"-- {run.name} {ticket_id} {canonical}: history {[tuple(r) for r in history]}; deliveries to {system} "
            f"{[tuple(r) for r in sent]}")


# ---- the runs and the tests -------------------------------------------------------------------------

@dataclass
class Runs:
    scenario: Scenario
    mappings: MappingSet
    expected: dict[int, dict[str, tuple]]
    scaled: Run
    single: Run


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, pg_admin: Engine, pg_template: str) -> Iterator[Runs]:
    """The scenario through the scaled deployment, then through the single-worker one, each on a fresh database
    with its own receivers and queues; every process stopped and every receiver closed at the end. A run that
    fails prints the processes' logs."""
    try:
        _answers(5672)
    except OSError as exc:
        services_missing(f"RabbitMQ at {RABBIT_URL}", exc)
    began = time.monotonic()
    log = print
    scenario = _scenario(SEED, datetime.now(UTC))
    assert len(scenario.events) == TICKETS + CHANGES
    databases: list[str] = []
    engines: list[Engine] = []
    hubs: list[Deployment] = []

    def deployment(name: str) -> tuple[Deployment, Engine]:
        database = f"th_test_{uuid.uuid4().hex[:12]}"
        with pg_admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{database}" TEMPLATE "{pg_template}"'))
        databases.append(database)
        engines.append(create_engine(_pg_url(database), pool_pre_ping=True))
        receivers: dict[str, Receiver] = {system: RecordReceiver(system).start() for system in SYSTEMS}
        hub = Deployment(tmp_path_factory.mktemp(name), _pg_url(database), RABBIT_URL, receivers)
        hubs.append(hub)
        hub.write_config()
        migrated = hub.run_cli("db", "upgrade")
        assert migrated.returncode == 0, migrated.stdout + migrated.stderr
        return hub, engines[-1]

    try:
        scaled_hub, engine = deployment("scaled")
        settings = load_settings(scaled_hub.config, environ={})
        mappings = load_mappings(settings.hub.mappings_dir, settings.mapping_names(), connector_schemas(settings))
        path = settings.workflow_path()
        assert path is not None
        workflow = load_workflow(path, list(settings.systems), settings.hub.clock_skew_seconds)

        # two API processes, three workers (8 threads each), one beat; 16 threads sending, alternating the APIs
        scaled_hub.start_team(apis=2, workers=WORKERS, concurrency=8)
        log(f"\nscaled: {len(scenario.events)} events ({len(scenario.first_wave) + len(scenario.second_wave)} "
            f"webhooks) to {scaled_hub.bases} from {SENDERS} threads, {WORKERS} workers")
        scaled = _drive("scaled", scaled_hub, engine, scenario, SENDERS, log)
        assert scaled_hub.all_running(), "a process of the scaled deployment stopped"
        scaled_hub.stop()

        # the reference: one API, one worker with one thread; the same events sent one by one, in the same order
        single_hub, engine = deployment("single")
        single_hub.start_team(apis=1, workers=1, concurrency=1)
        log(f"single: the same events to {single_hub.bases} from one thread, one worker with one thread")
        single = _drive("single", single_hub, engine, scenario, 1, log)
        assert single_hub.all_running(), "a process of the single-worker deployment stopped"
        single_hub.stop()
        for run in (scaled, single):
            log(f"{run.name}: inbox {run.inbox_states}; deliveries {dict(sorted(run.delivery_states.items()))}; "
                f"attempts {run.attempt_outcomes}; claimed more than once {len(run.resent)}; duplicate webhooks "
                f"answered {run.duplicates_answered}; seconds { {k: round(v, 1) for k, v in run.seconds.items()} }")
        log(f"both runs took {time.monotonic() - began:.0f} s")
        yield Runs(scenario, mappings, _expected(scenario, mappings, workflow), scaled, single)
    except BaseException:
        for hub in hubs:
            print(f"===== logs of the {hub.workdir.name} deployment\n{hub.logs()}")
        raise
    finally:
        for hub in hubs:
            try:
                hub.stop()
            finally:
                for receiver in hub.receivers.values():
                    receiver.stop()
        for engine in engines:
            engine.dispose()
        with pg_admin.connect() as conn:
            for database in databases:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))


@pytest.mark.integration
def test_two_apis_and_three_workers_settle_5000_events_exactly_as_one_worker_does(runs: Runs) -> None:
    """Every event processed once, nothing dead or waiting; the scaled run's golden records (value and
    provenance) equal the single worker's ticket by ticket, and both are what the events come to by the README's
    precedence and workflow rules."""
    for run in (runs.scaled, runs.single):
        assert run.inbox_states == {"processed": len(runs.scenario.events)}, run.inbox_states
        assert {state for _, state in run.delivery_states} <= {"delivered", "superseded"}, run.delivery_states
        repeats = len(runs.scenario.first_wave) + len(runs.scenario.second_wave) - len(runs.scenario.events)
        assert run.duplicates_answered >= repeats, run.duplicates_answered
    differences = _differences(runs.scaled, runs.single)
    assert not differences, f"{len(differences)} differences, e.g.:\n" + "\n".join(differences[:30])
    unexpected = _unexpected(runs.scaled, runs.expected) + _unexpected(runs.single, runs.expected)
    assert not unexpected, f"{len(unexpected)} unexpected values, e.g.:\n" + "\n".join(unexpected[:30])
    statuses = Counter(g["status"] for g in runs.scaled.golden.values())
    assert len(statuses) >= 5, statuses  # the scenario reached the workflow's states, not just `new`


@pytest.mark.integration
def test_no_subscribed_system_is_sent_the_same_write_twice(runs: Runs) -> None:
    """No receiver saw a webhook-id twice in the scaled run (nor in the single-worker one), and no delivery was
    claimed more than once (a write sent again: every receiver answered 200 at once)."""
    duplicates = _duplicate_deliveries(runs.scaled) + _duplicate_deliveries(runs.single)
    logged = [f"{run.name} {line}" for run in (runs.scaled, runs.single) for line in run.log_lines]
    resent = [line for line in logged if "outcome not recorded" in line or "lease ran out" in line]
    evidence = "\n".join([f"deliveries claimed more than once (id, system, ticket, attempts, state): "
                          f"{runs.scaled.resent + runs.single.resent}", *resent[:20],
                          f"... and {len(logged) - len(resent)} other warnings and errors logged, e.g.:",
                          *[line for line in logged if line not in resent][:10]])
    assert not duplicates, f"{len(duplicates)} duplicate deliveries, e.g.:\n" + "\n".join(duplicates[:30]) + \
        "\n" + evidence
    assert not runs.scaled.resent and not runs.single.resent, evidence
    assert set(runs.scaled.attempt_outcomes) == {"delivered"}, runs.scaled.attempt_outcomes


@pytest.mark.integration
def test_every_subscriber_ends_holding_the_golden_values(runs: Runs) -> None:
    """Per receiver, ticket and field it is written: the last write (in delivery order) carries the golden value
    in the system's terms: writes to one record never overtook each other."""
    stale = [(run, *item) for run in (runs.scaled, runs.single) for item in _stale_subscribers(run, runs.mappings)]
    assert not stale, f"{len(stale)} stale subscriber values, e.g.:\n" + "\n".join(
        [message for _, message, *_ in stale[:30]] + [_story(run, *where) for run, _, *where in stale[:5]])
