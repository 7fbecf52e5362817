"""How the change pipeline performs over HTTP with real processes, each figure beside a baseline measured
in the same run: (1) the embedded default (SQLite + kombu's filesystem broker, as `tickethub up` runs
it) and (2) PostgreSQL + RabbitMQ (a throwaway database and virtual host, dropped afterwards).

Per backend, on fresh hub instances (`python -m hub --config <tmp>/tickethub.toml api|worker|beat` with
the arguments `tickethub up` uses, restarted if they die as `up` does; CRM is the origin and five
generic systems subscribe, so every event opens a ticket and owes five deliveries):
- intake: closed-loop load (32 keep-alive connections from this process) on `POST /webhooks/crm`, API
  alone, against a bare ASGI endpoint (HMAC check + one INSERT into the same kind of database, served
  by uvicorn the same way); server CPU per webhook, and the API once more with `--no-relay`. Then
  500/s on a fixed schedule: acknowledgement p50/p99.
- intake -> dispatch: the 202 (client clock) to `inbox_events.processed_at` (stamped by process_event).
- end-to-end: 10/s for 10 s, then 100/s for 60 s, five receivers answering after 200 ms; per event, its
  acceptance (`deliveries.first_accepted_at`) to the last of its five `delivered_at`, the first and last
  thirds' p99 (a backlog that grows shows in the last), and where a delivery's time went; then bare raw-asyncio
  and aiohttp clients post the same kind of signed bodies to the same receivers at the hub's offered rate.
- pipeline: the events worker drains the backlog the intake left (`processed_at` span), against the
  same number of no-op Celery tasks drained with the same transport and worker options.

    python bench/pipeline.py [--quick] [--only embedded|team] [--only-end-to-end] [--pg ADMIN_URL] [--amqp URL]

Results go to stdout, progress to stderr. Loads are bounded in count and time and go to 127.0.0.1 only;
every process, database and virtual host started here is removed on exit, Ctrl-C or error. Team mode
needs `rabbitmqctl` (for the virtual host: others' hubs use the same queue names on `/`).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import contextlib
import hashlib
import hmac
import importlib.util
import itertools
import json
import math
import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SECRET = "whsec_" + base64.b64encode(b"tickethub-bench-secret-0123456789").decode()
SECRET_ENV = "BENCH_CRM_WEBHOOK_SECRETS"
SUBSCRIBERS = ("erp", "mes", "wms", "courier", "desk")
# the issue's acknowledgement targets at 500 webhooks/s with the workers busy: the embedded default's, team mode's
ACK_P99_TARGET = {"embedded": 0.020, "team": 0.050}
NOOP_QUEUE = "bench_noop"


@dataclass(frozen=True)
class Plan:
    """How long and how much each part runs (`--quick` shrinks it to a few seconds per part)."""

    client_ceiling_s: float = 3
    intake_s: float = 10
    intake_max_events: int = 5000
    connections: int = 32
    ack_rate: int = 500
    ack_s: float = 5
    drain_cap_s: float = 60
    e2e_light_rate: int = 10
    e2e_rate: int = 100
    e2e_s: float = 10  # the light run
    e2e_target_s: float = 60  # the run at the target rate (long enough to see whether a backlog grows)
    e2e_cap_s: float = 120
    receiver_delay_s: float = 0.2
    delivery_concurrency: int = 128


QUICK = Plan(client_ceiling_s=1, intake_s=2, intake_max_events=1000, ack_s=2, drain_cap_s=15, e2e_s=2,
             e2e_target_s=3, e2e_cap_s=40)


# ---- results ---------------------------------------------------------------------------------------

@dataclass
class Report:
    rows: list[tuple[str, str, str]] = field(default_factory=list)  # backend, figure, verdict
    deaths: list[tuple[str, str]] = field(default_factory=list)  # backend, what died

    def note_deaths(self, backend: str, phase: str, procs: Processes) -> None:
        for death in procs.take_deaths():
            self.line(textwrap.fill(f"DIED during {phase}, restarted: {death}", 110, initial_indent=" " * 8,
                                    subsequent_indent=" " * 13))
            self.deaths.append((backend, f"{phase}: {death}"))

    def line(self, text: str = "") -> None:
        print(text, flush=True)

    def figure(self, backend: str, name: str, text: str, verdict: str, how: str) -> None:
        self.line(f"  {verdict}  {name}: {text}")
        self.line(textwrap.fill(f"how: {how}", 110, initial_indent=" " * 8, subsequent_indent=" " * 13))
        self.rows.append((backend, name, verdict))


def progress(text: str) -> None:
    print(f"... {text}", file=sys.stderr, flush=True)


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile; +inf entries (never happened) sort last."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p * len(ordered)) - 1)] if ordered else math.nan


def ms(seconds: float) -> str:
    return "never" if math.isinf(seconds) else "n/a" if math.isnan(seconds) else f"{seconds * 1000:,.1f} ms"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


# ---- processes -------------------------------------------------------------------------------------

class Processes:
    """Children in their own process groups, stopped (TERM, then KILL) when the bench leaves. Hub processes
    that die are started again at once, as `tickethub up`'s supervisor does, and each death is recorded."""

    def __init__(self, logs: Path):
        self.logs = logs
        self.logs.mkdir(parents=True, exist_ok=True)
        self.running: dict[str, subprocess.Popen[bytes]] = {}
        self.restartable: dict[str, tuple[list[str], dict[str, str]]] = {}
        self.deaths: list[str] = []
        self.lock = threading.Lock()
        self.closing = threading.Event()
        threading.Thread(target=self._watch, name="bench-supervisor", daemon=True).start()

    def start(self, name: str, argv: list[str], env: dict[str, str], restart: bool = False
              ) -> subprocess.Popen[bytes]:
        with self.lock:
            if restart:
                self.restartable[name] = (argv, env)
            return self._spawn(name, argv, env)

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        with (self.logs / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        self.running[name] = proc
        return proc

    def _watch(self) -> None:
        while not self.closing.wait(0.2):
            with self.lock:
                for name, (argv, env) in self.restartable.items():
                    code = self.running[name].poll()
                    if code is not None:
                        self.deaths.append(f"{name} (exit {code}: {self._cause(name)})")
                        self._spawn(name, argv, env)

    def _cause(self, name: str) -> str:
        """The last line a dead child wrote, and the innermost frame of ours or a library's (not stdlib)."""
        lines = [line.strip() for line in self.tail(name, 60).splitlines() if line.strip()]
        frames = [line for line in lines
                  if line.startswith('File "') and ("site-packages" in line or str(ROOT) in line)]
        shown = []
        for frame in frames[-2:]:
            path, _, rest = frame.removeprefix('File "').partition('", line ')
            shown.append(f"{'/'.join(Path(path).parts[-3:])}:{rest.replace(', in ', ' ')}")
        return (lines[-1][:160] if lines else "no output") + (f" at {' > '.join(shown)}" if shown else "")

    def take_deaths(self) -> list[str]:
        """What died (and was restarted) since the last call."""
        with self.lock:
            deaths, self.deaths = self.deaths, []
        return deaths

    def check(self, *names: str) -> None:
        """Raise if a child that is not restarted has exited."""
        with self.lock:
            for name in names:
                proc = self.running.get(name)
                if name not in self.restartable and proc is not None and proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.tail(name)}")

    def tail(self, name: str, lines: int = 25) -> str:
        path = self.logs / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def stop(self, *names: str, grace: float = 10) -> None:
        """TERM, then KILL after `grace` seconds; a child leaves `running` only once it is gone."""
        with self.lock:
            chosen = [name for name in (names or tuple(self.running)) if name in self.running]
            for name in chosen:
                self.restartable.pop(name, None)
        for name in chosen:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.running[name].pid, signal.SIGTERM)
        for name in chosen:
            proc = self.running[name]
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
            with self.lock:
                self.running.pop(name, None)

    def close(self) -> None:
        self.closing.set()
        self.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, procs: Processes, name: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        procs.check(name)
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{name} did not listen on {port} within {timeout:.0f} s:\n{procs.tail(name)}")


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TICKETHUB_", "PROMETHEUS_"))}
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


def bench_argv(*args: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), *args]


# ---- signed webhooks and the load generator --------------------------------------------------------

class Webhooks:
    """Signed generic change notices from the CRM, each opening a new ticket (five deliveries each)."""

    def __init__(self, prefix: str):
        self.prefix, self.numbers = prefix, itertools.count()

    def next(self) -> tuple[str, bytes, dict[str, str]]:
        from hub.core.signing import sign_standard

        msg_id = f"{self.prefix}-{next(self.numbers)}"
        body = json.dumps({"local_id": msg_id, "modified_at": datetime.now(UTC).isoformat(),
                           "author": "agent@example.com", "fields": {"contact": {"name": f"Customer {msg_id}"}}},
                          separators=(",", ":")).encode()
        stamp = int(time.time())
        return msg_id, body, {"content-type": "application/json", "webhook-id": msg_id,
                              "webhook-timestamp": str(stamp),
                              "webhook-signature": sign_standard(SECRET, msg_id, stamp, body)}


@dataclass(frozen=True)
class Sent:
    msg_id: str
    status: int  # 0: no answer
    answered: float  # wall clock (time.time()) when the answer arrived
    latency: float  # seconds: from the send (closed loop) or from when it was due (open loop)


class Connections:
    """Keep-alive HTTP/1.1 connections to one local port, at most `size` open: a minimal client in the way
    wrk is one. (Async httpx measured 110-330 requests/s here: httpcore 1.0.9 tries `import sniffio`, which is
    not installed, on every request; the server under test would have been measured short.)"""

    def __init__(self, port: int, size: int):
        self.port, self.size, self.opened = port, size, 0
        self.idle: asyncio.LifoQueue[tuple[asyncio.StreamReader, asyncio.StreamWriter] | None] = asyncio.LifoQueue()

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> int:
        """The answer's status; 0 for no answer. A kept-alive connection the server has closed meanwhile
        (uvicorn closes idle ones after 5 s) is replaced and the request sent again, as HTTP clients do."""
        request = (f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1:{self.port}\r\n"
                   + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
                   + f"content-length: {len(body)}\r\n\r\n").encode() + body
        conn = await self._take()
        for attempt in (1, 2):
            reused = conn is not None
            try:
                if conn is None:
                    conn = await asyncio.open_connection("127.0.0.1", self.port)
                conn[1].write(request)
                status, keep = await _read_response(conn[0])
                break
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
                if conn is not None:
                    conn[1].close()
                conn, status, keep = None, 0, False
                if not (reused and attempt == 1):
                    break
        self.idle.put_nowait(conn if keep else None)  # None: a slot for a new connection
        if conn is not None and not keep:
            conn[1].close()
        return status

    async def _take(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        if self.idle.empty() and self.opened < self.size:
            self.opened += 1
            return None
        return await self.idle.get()

    def close(self) -> None:
        while not self.idle.empty():
            conn = self.idle.get_nowait()
            if conn is not None:
                conn[1].close()


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    head = (await reader.readuntil(b"\r\n\r\n")).lower()
    status = int(head[9:12])
    lines = head.split(b"\r\n")
    length = next((int(line[15:]) for line in lines if line.startswith(b"content-length:")), None)
    if length is not None:
        await reader.readexactly(length)
    elif b"transfer-encoding: chunked" in head:
        while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
            await reader.readexactly(size + 2)
        await reader.readuntil(b"\r\n")
    else:
        return status, False
    return status, b"connection: close" not in head


@dataclass(frozen=True)
class Target:
    port: int
    path: str = "/webhooks/crm"


async def _post(conns: Connections, target: Target, webhooks: Webhooks, started: float) -> Sent:
    msg_id, body, headers = webhooks.next()
    status = await conns.post(target.path, body, headers)
    return Sent(msg_id, status, time.time(), time.perf_counter() - started)


async def closed_loop(target: Target, webhooks: Webhooks, connections: int, seconds: float,
                      limit: int) -> tuple[list[Sent], float]:
    """`connections` senders, each posting as soon as its last answer came, until time or count runs out."""
    sent: list[Sent] = []
    budget = itertools.count()
    conns = Connections(target.port, connections)
    deadline = time.perf_counter() + seconds

    async def sender() -> None:
        while time.perf_counter() < deadline and next(budget) < limit:
            sent.append(await _post(conns, target, webhooks, time.perf_counter()))

    started = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(connections)))
    elapsed = time.perf_counter() - started
    conns.close()
    return sent, elapsed


async def open_loop(target: Target, webhooks: Webhooks, rate: float, seconds: float,
                    connections: int = 64) -> list[Sent]:
    """`rate` requests a second on a fixed schedule over up to `connections` connections; latency counts
    from when each was due, so a server (or client) that falls behind is charged for it."""
    sent: list[Sent] = []
    conns = Connections(target.port, connections)

    async def one(due: float) -> None:
        sent.append(await _post(conns, target, webhooks, due))

    tasks = []
    start = time.perf_counter() + 0.05
    for i in range(int(rate * seconds)):
        due = start + i / rate
        if (delay := due - time.perf_counter()) > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(due)))
    await asyncio.gather(*tasks)
    conns.close()
    return sent


def accepted(sent: list[Sent]) -> list[Sent]:
    return [s for s in sent if s.status == 202]


def refusals(sent: list[Sent]) -> str:
    bad: dict[int, int] = {}
    for s in sent:
        if s.status != 202:
            bad[s.status] = bad.get(s.status, 0) + 1
    return "" if not bad else " (not 202: " + ", ".join(f"{n}x {c or 'no answer'}" for c, n in bad.items()) + ")"


# ---- local receivers (the five subscribed systems) -------------------------------------------------

def receivers_main(ports: list[int], delay: float) -> None:
    """Tiny HTTP/1.1 keep-alive servers that answer 200 after `delay` seconds (cheap on CPU)."""
    reply = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                await reader.readexactly(length)
                if delay:
                    await asyncio.sleep(delay)
                writer.write(reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()

    async def serve() -> None:
        servers = [await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024) for port in ports]
        await asyncio.gather(*(s.serve_forever() for s in servers))

    asyncio.run(serve())


# ---- the delivery floors: bare clients posting what the hub posts ---------------------------------------

FLOOR_CLIENTS = ("raw", "aiohttp")  # raw asyncio streams (keep-alive HTTP/1.1), aiohttp's ClientSession


def floor_main(client: str, ports: list[int], per_second: float, seconds: float, in_flight: int) -> None:
    """Post signed bodies, as the generic connector prepares them (JSON of the delivery, Standard Webhooks
    headers signed with the hub's own function), to the receivers in turn at `per_second` on a fixed schedule,
    at most `in_flight` at once; print JSON: posts answered, the span of their answers, CPU seconds."""
    from hub.core.signing import sign_standard

    secret = SECRET

    def prepared(n: int) -> tuple[int, bytes, dict[str, str]]:
        port = ports[n % len(ports)]
        body = json.dumps({"type": "ticket.fields", "delivery_id": n, "ticket_id": f"20261206-SVC-{n:05d}",
                           "local_id": None, "fields": {"customer.name": f"Customer {n}", "customer.phone":
                           "+44 20 7946 0000", "customer.address": f"{n} Floor Street", "fault.description":
                           "pump jams at start-up", "status": "new"}}, separators=(",", ":")).encode()
        msg_id, stamp = f"delivery-{n}", int(time.time())
        return port, body, {"content-type": "application/json", "webhook-id": msg_id,
                            "webhook-timestamp": str(stamp), "webhook-signature": sign_standard(secret, msg_id,
                                                                                                  stamp, body)}

    answered: list[float] = []

    async def raw_client() -> Callable[[int, bytes, dict[str, str]], Any]:
        pools: dict[int, list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]] = {p: [] for p in ports}

        async def post(port: int, body: bytes, headers: dict[str, str]) -> int:
            pool = pools[port]
            reader, writer = pool.pop() if pool else await asyncio.open_connection("127.0.0.1", port)
            head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            writer.write(f"POST /hub HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n{head}content-length: {len(body)}"
                         f"\r\n\r\n".encode() + body)
            answer = await reader.readuntil(b"\r\n\r\n")
            length = next((int(line.split(b":", 1)[1]) for line in answer.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            await reader.readexactly(length)
            pool.append((reader, writer))
            return int(answer.split(b" ", 2)[1])

        return post

    async def run() -> None:
        session = None
        if client == "aiohttp":
            import aiohttp

            session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=in_flight))

            async def post(port: int, body: bytes, headers: dict[str, str]) -> int:
                async with session.post(f"http://127.0.0.1:{port}/hub", data=body, headers=headers) as answer:
                    await answer.read()
                    return answer.status
        else:
            post = await raw_client()
        gate = asyncio.Semaphore(in_flight)

        async def one(n: int) -> None:
            async with gate:
                if await post(*prepared(n)) == 200:
                    answered.append(time.monotonic())

        start, tasks = time.monotonic(), []
        for n in range(int(per_second * seconds)):
            delay = start + n / per_second - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(one(n)))
        await asyncio.gather(*tasks)
        if session is not None:
            await session.close()

    cpu = time.process_time()
    run_on_hubs_loop(run())
    print(json.dumps({"answered": len(answered), "span": max(answered) - min(answered) if answered else 0.0,
                      "cpu": time.process_time() - cpu}))


def servers_stack() -> str:
    """What uvicorn serves with here and what the deliveries' client runs on: both pick the C parts when installed."""
    parser = "httptools (C)" if importlib.util.find_spec("httptools") else "h11 (pure Python)"
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    return f"uvicorn with {parser} on {loop}; the deliveries' aiohttp and the bare floors on {loop}"


def run_on_hubs_loop(main: Any) -> None:
    """Run `main` on the event loop the hub's deliveries use (`hub.outbound`): uvloop where installed."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


# The issue's own figures: hub CPU <= 6 ms per event on the machine where aiohttp posted 5 bodies for 1.5 ms
ISSUE_CPU_TARGET_MS, ISSUE_AIOHTTP_FLOOR_MS = 6.0, 1.5


def measure_floors(backend: str, plan: Plan, ports: list[int], rate: int, hub_rate: float, hub_cpu_ms: float,
                   report: Report) -> None:
    """The same receivers, the same offered rate and the same in-flight bound as the hub had, through the bare
    clients; the hub's deliveries/s against aiohttp's (target >= 0.9x); the hub's CPU per event against what
    aiohttp's five posts cost on this machine in this run (machines here differ in speed by 2x from day to
    day: the ratio shows whether the hub or the machine moved)."""
    posts = rate * len(SUBSCRIBERS)
    for client in FLOOR_CLIENTS:
        progress(f"{backend}: floor, {client} client, {posts}/s for {plan.e2e_s:.0f} s")
        done = subprocess.run(bench_argv("_floor", client, ",".join(map(str, ports)), str(posts), str(plan.e2e_s),
                                         str(plan.delivery_concurrency)),
                              capture_output=True, text=True, env=child_env(), timeout=plan.e2e_cap_s + 60)
        if done.returncode != 0:
            report.line(f"  floor with {client}: failed: {done.stderr[-500:]}")
            continue
        result = json.loads(done.stdout.strip().splitlines()[-1])
        per_second = result["answered"] / result["span"] if result["span"] else math.nan
        per_event = result["cpu"] * 1000 / max(result["answered"] / len(SUBSCRIBERS), 1)
        if client == "aiohttp":
            report.figure(backend, f"deliveries/s at {rate}/s vs a bare aiohttp client",
                          f"hub {hub_rate:,.0f}/s vs aiohttp {per_second:,.0f}/s = {hub_rate / per_second:.2f}x "
                          "(target >= 0.9x)", verdict(hub_rate / per_second >= 0.9),
                          f"aiohttp ClientSession posting the same kind of signed bodies to the same receivers at "
                          f"{posts}/s, at most {plan.delivery_concurrency} in flight: {per_event:.1f} ms CPU per 5 "
                          "posts")
            report.line(f"  hub CPU per event at {rate}/s over aiohttp's CPU per 5 posts, same run: "
                        f"{hub_cpu_ms:.1f} / {per_event:.1f} ms = {hub_cpu_ms / per_event:.1f}x (the issue's target, "
                        f"{ISSUE_CPU_TARGET_MS:g} ms, was set where aiohttp took {ISSUE_AIOHTTP_FLOOR_MS:g} ms: "
                        f"{ISSUE_CPU_TARGET_MS / ISSUE_AIOHTTP_FLOOR_MS:.1f}x)")
        else:
            report.line(f"  floor, raw asyncio streams: {per_second:,.0f} posts/s of {posts}/s offered, "
                        f"{per_event:.1f} ms CPU per 5 posts")


# ---- the bare baseline endpoint --------------------------------------------------------------------

class BareInbox:
    """One INSERT per webhook into a table like the inbox, through a small pool (like SQLAlchemy's 5+10)."""

    def __init__(self, url: str, size: int = 15):
        self.url, self.sqlite = url, url.startswith("sqlite:")
        self.pool: queue.LifoQueue[Any] = queue.LifoQueue()
        self.spare = threading.Semaphore(size)  # connections that may still be opened
        self.spare.acquire()
        first = self._connect()
        payload = "TEXT" if self.sqlite else "JSONB"
        self._run(first, f"CREATE TABLE IF NOT EXISTS bare_inbox (event_id VARCHAR(255) PRIMARY KEY, system "
                         f"VARCHAR(64) NOT NULL, received_at TIMESTAMP NOT NULL, payload {payload} NOT NULL)", ())
        self.pool.put(first)

    def _connect(self) -> Any:
        if self.sqlite:
            import sqlite3

            conn = sqlite3.connect(self.url.removeprefix("sqlite:///"), timeout=30, isolation_level=None,
                                   check_same_thread=False)
            for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=30000"):  # as hub/store/engine.py
                conn.execute(f"PRAGMA {pragma}")
            return conn
        import psycopg

        return psycopg.connect(self.url)

    def _run(self, conn: Any, sql: str, args: tuple[Any, ...]) -> Any:
        if self.sqlite:
            conn.execute("BEGIN IMMEDIATE")
            row = conn.execute(sql, args).fetchone()
            conn.execute("COMMIT")
            return row
        with conn.cursor() as cur:
            cur.execute(sql, args)
            row = cur.fetchone() if cur.description else None
        conn.commit()
        return row

    def insert(self, msg_id: str, body: bytes) -> bool:
        """Store the webhook; True if it was a duplicate."""
        try:
            conn = self.pool.get_nowait()
        except queue.Empty:
            conn = self._connect() if self.spare.acquire(blocking=False) else self.pool.get()
        now = datetime.now(UTC)
        try:
            mark = "?" if self.sqlite else "%s"
            cast = "" if self.sqlite else "::jsonb"
            row = self._run(conn, f"INSERT INTO bare_inbox VALUES ({mark}, {mark}, {mark}, {mark}{cast}) "
                                  "ON CONFLICT DO NOTHING RETURNING event_id",
                            (f"crm:{msg_id}", "crm", now.isoformat() if self.sqlite else now, body.decode()))
        finally:
            self.pool.put(conn)
        return row is None


def bare_signature_ok(key: bytes, headers: dict[bytes, bytes], body: bytes) -> bool:
    msg_id, stamp = headers.get(b"webhook-id", b""), headers.get(b"webhook-timestamp", b"")
    if not msg_id or not stamp.isdigit() or abs(int(stamp) - time.time()) > 300:
        return False
    expected = hmac.new(key, msg_id + b"." + stamp + b"." + body, hashlib.sha256).digest()
    for entry in headers.get(b"webhook-signature", b"").split():
        version, _, value = entry.partition(b",")
        with contextlib.suppress(ValueError):
            if version == b"v1" and hmac.compare_digest(expected, base64.b64decode(value, validate=True)):
                return True
    return False


def bare_app(key: bytes, inbox: BareInbox) -> Callable[..., Any]:
    """A raw ASGI app: read the body, check the signature, insert, answer 202 like the hub does."""
    import anyio.to_thread

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body, more = b"", True
        while more:
            message = await receive()
            body, more = body + message.get("body", b""), message.get("more_body", False)
        headers = dict(scope["headers"])
        status, reply = 401, b'{"detail":"signature check failed"}'
        if bare_signature_ok(key, headers, body):
            msg_id = headers[b"webhook-id"].decode()
            duplicate = await anyio.to_thread.run_sync(inbox.insert, msg_id, body)
            status, reply = 202, json.dumps({"event_id": f"crm:{msg_id}", "duplicate": duplicate}).encode()
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(reply)).encode())]})
        await send({"type": "http.response.body", "body": reply})

    return app


def bare_main(port: int, database: str) -> None:
    import uvicorn

    from hub.core.signing import standard_key

    uvicorn.run(bare_app(standard_key(SECRET), BareInbox(database)), host="127.0.0.1", port=port,
                log_level="warning")  # as `tickethub api` serves the hub (hub/cli.py _serve)


# ---- raw Celery baseline ---------------------------------------------------------------------------

EMBEDDED_BROKER_URL = "tickethub-fs://"  # the hub's embedded transport (hub/embedded_broker.py), as `up` uses

def noop_app(broker_url: str, folder: str, marks: str) -> Any:
    """A throwaway Celery app configured like the hub's (JSON, late acks) with one no-op task that
    stamps the time when it is the first or last of a run."""
    from celery import Celery

    import hub.messaging.embedded_broker  # noqa: F401  (registers the tickethub-fs:// transport)
    from hub.messaging.celery_app import EMBEDDED_POLL_SECONDS

    app = Celery("bench_noop", set_as_current=False)
    options = {"data_folder_in": folder, "data_folder_out": folder, "control_folder": os.path.join(folder, "control"),
               "polling_interval": EMBEDDED_POLL_SECONDS}  # as the hub's workers poll (it was 0.05 here until 12-06)
    embedded = broker_url == EMBEDDED_BROKER_URL
    app.conf.update(broker_url=broker_url, broker_transport_options=options if embedded else {},
                    task_serializer="json", accept_content=["json"], task_ignore_result=True,
                    task_acks_late=True, task_reject_on_worker_lost=True, task_default_queue=NOOP_QUEUE,
                    broker_connection_retry_on_startup=True, worker_hijack_root_logger=False,
                    worker_redirect_stdouts=False)

    @app.task(name="bench.noop", acks_late=True, shared=False)
    def noop(mark: str | None = None) -> None:
        if mark:
            Path(marks, mark).write_text(repr(time.time()))

    return app


def noop_worker_main(broker_url: str, folder: str, marks: str, threads: str) -> None:
    app = noop_app(broker_url, folder, marks)
    app.worker_main(["worker", "--pool", "threads", "--concurrency", threads, "--prefetch-multiplier", "8",
                     "--queues", NOOP_QUEUE, "--without-gossip", "--without-mingle", "--without-heartbeat",
                     "--loglevel", "WARNING"])


def noop_rate(broker_url: str, folder: Path, procs: Processes, count: int, cap: float, threads: int) -> float:
    """No-op tasks a second: publish `count` (+ first/last marks), then start the worker and time it."""
    marks, broker = folder / "marks", folder / "broker"
    marks.mkdir(parents=True)
    broker.mkdir()
    app = noop_app(broker_url, str(broker), str(marks))
    noop = app.tasks["bench.noop"]
    with app.producer_or_acquire() as producer:  # as hub/messaging/publisher.py publish
        for mark in ("first", *([None] * count), "last"):
            noop.apply_async((mark,), producer=producer)
    procs.start("noop-worker", bench_argv("_noop-worker", broker_url, str(broker), str(marks), str(threads)),
                child_env())
    deadline = time.monotonic() + cap
    while not (marks / "last").exists() and time.monotonic() < deadline:
        procs.check("noop-worker")
        time.sleep(0.1)
    procs.stop("noop-worker")
    if not (marks / "last").exists():
        return math.nan
    span = float((marks / "last").read_text()) - float((marks / "first").read_text())
    return (count + 1) / span


# ---- a hub instance --------------------------------------------------------------------------------

@dataclass
class HubInstance:
    """One hub instance on its own database and broker, its processes started as `tickethub up` does."""

    folder: Path
    database_url: str
    broker_url: str | None
    procs: Processes
    receivers: list[int] = field(default_factory=list)
    api_port: int = 0

    def write_config(self) -> Path:
        maps = self.folder / "mappings"
        maps.mkdir(parents=True)
        for path in (ROOT / "mappings").glob("*.toml"):
            text = path.read_text()
            if path.stem in ("mes", "courier"):  # so that a CRM name change goes to all five subscribers
                text += '\n[fields."customer.name"]\nfield = "customer_name"\ndirection = "write"\n'
            (maps / path.name).write_text(text)
        (maps / "desk.toml").write_text('[system]\nrank = 5\n\n[fields."customer.name"]\nfield = "name"\n'
                                        'direction = "write"\n')
        urls = [f"http://127.0.0.1:{p}/" for p in self.receivers] or ["http://127.0.0.1:9/"] * len(SUBSCRIBERS)
        lines = ["[hub]", f'database_url = "{self.database_url}"', f'data_dir = "{self.folder / "var"}"',
                 'mappings_dir = "mappings"']
        lines += [f'broker_url = "{self.broker_url}"'] if self.broker_url else []
        lines += ["", "[systems.crm]", 'base_url = "http://127.0.0.1:9/"', "origin = true",
                  f'webhook_secrets_env = "{SECRET_ENV}"']
        for name, url in zip(SUBSCRIBERS, urls, strict=True):  # the secret also signs the hub's deliveries
            lines += ["", f"[systems.{name}]", f'base_url = "{url}"', f'webhook_secrets_env = "{SECRET_ENV}"']
        config = self.folder / "tickethub.toml"
        config.write_text("\n".join(lines) + "\n")
        return config

    def start(self, *parts: str, plan: Plan, relay: bool = True) -> None:
        """Start `api`, `events`, `deliveries`, `beat` (any of them), with the arguments `tickethub up` uses."""
        if not (self.folder / "tickethub.toml").exists():
            self.write_config()
            subprocess.run(self.argv("db", "upgrade"), env=self.env(), cwd=ROOT, check=True, capture_output=True,
                           timeout=120)
        if "api" in parts:
            self.api_port = free_port()
        commands = {
            "api": ("api", "--port", str(self.api_port), "--relay" if relay else "--no-relay"),
            "events": ("worker", "--queues", "events", "--concurrency", str(self.event_threads), "--prefetch", "8"),
            "deliveries": ("worker", "--queues", "deliveries", "--concurrency", str(plan.delivery_concurrency),
                           "--prefetch", "1"),
            "beat": ("beat",),
        }
        commands["events2"] = commands["events"]  # a second events worker (team mode: scale-out of events)
        for part in parts:
            self.procs.start(part, self.argv(*commands[part]), self.env(), restart=True)
        if "api" in parts:
            wait_port(self.api_port, self.procs, "api")

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "hub", "--config", str(self.folder / "tickethub.toml"), *args]

    @property
    def event_threads(self) -> int:
        return event_threads(self.database_url.startswith("sqlite"))

    def env(self) -> dict[str, str]:
        extra = {"TICKETHUB_API_TOKEN": "bench-token", SECRET_ENV: SECRET}
        if self.broker_url is None:  # `tickethub up` shares one metrics folder between its children
            metrics = self.folder / "var" / "metrics"
            metrics.mkdir(parents=True, exist_ok=True)
            extra["PROMETHEUS_MULTIPROC_DIR"] = str(metrics)
        return child_env(**extra)

    @property
    def target(self) -> Target:
        return Target(self.api_port)

    @contextlib.contextmanager
    def db(self) -> Iterator[Any]:
        from sqlalchemy import create_engine

        engine = create_engine(self.database_url)  # plain engine: reading takes no write lock on SQLite
        try:
            with engine.connect() as conn:
                yield conn
        finally:
            engine.dispose()

    def events(self, prefix: str) -> dict[str, Any]:
        """The inbox rows of one run, by message id."""
        from sqlalchemy import select

        from hub.store.tables import inbox_events as t

        with self.db() as conn:
            rows = conn.execute(select(t.c.external_id, t.c.state, t.c.received_at, t.c.dispatched_at,
                                       t.c.processed_at, t.c.ticket_id).where(t.c.external_id.like(f"{prefix}-%")))
            return {r.external_id: r for r in rows}

    def deliveries(self) -> dict[str, list[Any]]:
        from sqlalchemy import func, select

        from hub.store.tables import deliveries as t
        from hub.store.tables import delivery_attempts as a

        last = (select(a.c.delivery_id, func.max(a.c.started_at).label("started_at")).group_by(a.c.delivery_id)
                .subquery())
        found: dict[str, list[Any]] = {}
        with self.db() as conn:
            for r in conn.execute(select(t.c.ticket_id, t.c.state, t.c.first_accepted_at, t.c.delivered_at,
                                         t.c.created_at, last.c.started_at)
                                  .outerjoin(last, last.c.delivery_id == t.c.id)):
                found.setdefault(r.ticket_id, []).append(r)
        return found

    def wait_events(self, prefix: str, count: int, cap: float, column: str = "processed_at",
                    stall: float = 15) -> dict[str, Any]:
        """The run's inbox rows once `count` have `column` set, or after `cap` seconds, or `stall` seconds
        without progress (a message the broker lost is only re-sent by the sweeper, after 30 s)."""
        deadline, last, progressed = time.monotonic() + cap, -1, time.monotonic()
        while True:
            done = self.count_events(prefix, column)
            now = time.monotonic()
            if done != last:
                last, progressed = done, now
            if done >= count or now > deadline or now - progressed > stall:
                return self.events(prefix)
            self.procs.check(*self.procs.running)
            time.sleep(0.25)

    def count_events(self, prefix: str, column: str) -> int:
        """How many of the run's events have `column` set: counted by the database (reading every row four times a
        second cost the database being measured a share of a core)."""
        from sqlalchemy import func, select

        from hub.store.tables import inbox_events as t

        with self.db() as conn:
            return int(conn.execute(select(func.count()).select_from(t).where(
                t.c.external_id.like(f"{prefix}-%"), t.c[column].is_not(None))).scalar_one())


def event_threads(sqlite: bool) -> int:
    """The events worker's threads, as `tickethub up` chooses them for the database."""
    from hub.cli.serve import default_event_threads

    return default_event_threads("sqlite" if sqlite else "postgresql")


def epoch(moment: datetime | None) -> float:
    return math.inf if moment is None else moment.timestamp()


# ---- backends --------------------------------------------------------------------------------------

class Backend:
    """Fresh databases (and brokers) for each hub instance, removed when the bench leaves."""

    def __init__(self, name: str, label: str, cleanup: contextlib.ExitStack, tmp: Path):
        self.name, self.label, self.cleanup, self.tmp = name, label, cleanup, tmp
        self.counter = itertools.count()

    def database(self) -> str:
        raise NotImplementedError

    def broker(self, folder: Path) -> str | None:
        raise NotImplementedError

    def hub(self, procs: Processes, receivers: list[int] | None = None) -> HubInstance:
        folder = self.tmp / f"{self.name}-hub-{next(self.counter)}"
        folder.mkdir()
        return HubInstance(folder, self.database(), self.broker(folder), procs, receivers or [])

    def noop_broker(self, folder: Path) -> str:
        return self.broker(folder) or EMBEDDED_BROKER_URL


class Embedded(Backend):
    def database(self) -> str:
        return f"sqlite:///{self.tmp / f'{self.name}-{next(self.counter)}.db'}"

    def broker(self, folder: Path) -> str | None:
        return None  # the hub's embedded default: kombu's filesystem transport under data_dir/broker


class Team(Backend):
    def __init__(self, name: str, label: str, cleanup: contextlib.ExitStack, tmp: Path, pg: str, amqp: str):
        super().__init__(name, label, cleanup, tmp)
        self.pg, self.amqp = pg, amqp.rstrip("/")

    def database(self) -> str:
        from sqlalchemy import create_engine, text

        name = f"th_bench_{uuid.uuid4().hex[:10]}"
        admin = create_engine(self.pg, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))

        def drop() -> None:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()

        self.cleanup.callback(drop)
        return self.pg.rsplit("/", 1)[0] + f"/{name}"

    def broker(self, folder: Path) -> str | None:
        """A virtual host of our own: others' tests use the same queue names on `/`."""
        vhost = f"th_bench_{uuid.uuid4().hex[:10]}"
        for args in (["add_vhost", vhost], ["set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"]):
            subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)
        self.cleanup.callback(subprocess.run, ["rabbitmqctl", "-q", "delete_vhost", vhost], capture_output=True,
                              timeout=60)
        return f"{self.amqp}/{vhost}"


def psycopg_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


# ---- the measurements ------------------------------------------------------------------------------

def measure_client_ceiling(plan: Plan, procs: Processes, report: Report) -> float:
    port = free_port()
    procs.start("null-server", bench_argv("_receivers", str(port), "0"), child_env())
    wait_port(port, procs, "null-server")
    sent, elapsed = asyncio.run(closed_loop(Target(port, "/"), Webhooks("ceiling"), plan.connections,
                                            plan.client_ceiling_s, 10**6))
    procs.stop("null-server")
    rate = len([s for s in sent if s.status == 200]) / elapsed
    report.line(f"load generator: keep-alive HTTP/1.1 over asyncio streams in this process, {plan.connections} "
                f"connections; its ceiling against a do-nothing asyncio server is {rate:,.0f} requests/s")
    return rate


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Intake:
    rate: float  # 202s a second
    cpu_ms: float  # server CPU per accepted webhook
    sent: list[Sent]
    elapsed: float


def drive_max(target: Target, prefix: str, plan: Plan, pid: int) -> Intake:
    before = cpu_seconds(pid)
    sent, elapsed = asyncio.run(closed_loop(target, Webhooks(prefix), plan.connections, plan.intake_s,
                                            plan.intake_max_events))
    ok = len(accepted(sent))
    return Intake(ok / elapsed, (cpu_seconds(pid) - before) * 1000 / max(ok, 1), sent, elapsed)


def measure_bare(backend: Backend, plan: Plan, procs: Processes) -> tuple[Intake, list[Sent]]:
    database = backend.database()
    database = database if database.startswith("sqlite") else psycopg_url(database)
    port = free_port()
    proc = procs.start("bare", bench_argv("_bare", str(port), database), child_env())
    wait_port(port, procs, "bare")
    intake = drive_max(Target(port), "bare-max", plan, proc.pid)
    timed = asyncio.run(open_loop(Target(port), Webhooks("bare-ack"), plan.ack_rate, plan.ack_s))
    procs.stop("bare")
    return intake, timed


def measure_intake_and_drain(backend: Backend, plan: Plan, procs: Processes, report: Report,
                             bare: Intake) -> tuple[int, float]:
    """API alone under closed-loop load (and, to see what the relay costs, once more on a fresh instance
    with `--no-relay`); then the events worker drains what the first one accepted."""
    quiet = backend.hub(procs)
    quiet.start("api", plan=plan, relay=False)
    no_relay = drive_max(quiet.target, "quiet", plan, procs.running["api"].pid)
    procs.stop("api")
    report.note_deaths(backend.label, "intake with --no-relay", procs)

    hub = backend.hub(procs)
    hub.start("api", plan=plan)
    intake = drive_max(hub.target, "max", plan, procs.running["api"].pid)
    ok = accepted(intake.sent)
    rows = hub.wait_events("max", len(ok), 60, column="dispatched_at")
    stored = len({s.msg_id for s in ok} & set(rows))
    ratio = intake.rate / bare.rate
    report.figure(backend.label, "intake, max",
                  f"hub {intake.rate:,.0f}/s vs bare {bare.rate:,.0f}/s = {ratio:.2f}x (target >= 0.8x: "
                  f"{verdict(ratio >= 0.8)}; >= 1,000/s: {verdict(intake.rate >= 1000)}){refusals(intake.sent)}",
                  verdict(ratio >= 0.8 and intake.rate >= 1000),
                  f"{plan.connections} connections for {intake.elapsed:.1f} s (or {plan.intake_max_events:,} "
                  f"webhooks), 202s per second, API alone; {stored:,} of {len(ok):,} 202s found in the inbox. "
                  f"Server CPU per accepted webhook: hub API {intake.cpu_ms:.2f} ms (with --no-relay "
                  f"{no_relay.cpu_ms:.2f} ms and {no_relay.rate:,.0f}/s), bare {bare.cpu_ms:.2f} ms; one uvicorn "
                  "process can use one core")
    report.note_deaths(backend.label, "intake", procs)

    progress(f"{backend.name}: events worker draining {len(ok):,} events")
    hub.start("events", plan=plan)
    hub.wait_events("max", 1, 60)  # the worker has started: from here on the machine is draining
    with MachineBusy() as busy:
        rows = hub.wait_events("max", len(ok), plan.drain_cap_s)
    procs.stop("api", "events")
    drain = drain_rate(rows)
    if isinstance(backend, Team):
        measure_two_event_workers(backend, plan, procs, report, drain, busy.fraction)
    return len(ok), drain


class MachineBusy:
    """The share of the machine's CPU time (every CPU, every process) that was not idle while the block ran."""

    fraction = math.nan

    @staticmethod
    def _read() -> tuple[int, int]:
        ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(ticks), ticks[3] + ticks[4]  # all, idle + iowait

    def __enter__(self) -> MachineBusy:
        self._start = self._read()
        return self

    def __exit__(self, *_: object) -> None:
        (total, idle), (total0, idle0) = self._read(), self._start
        self.fraction = 1 - (idle - idle0) / (total - total0) if total > total0 else math.nan


class LockWaits:
    """Samples, while the block runs, the database's sessions waiting for a lock (pg_stat_activity): what they wait
    for (a row another transaction holds shows as its `transactionid`) and the statement waiting."""

    def __init__(self, database_url: str, every: float = 0.05):
        self.url, self.every = database_url, every
        self.samples, self.waits = 0, collections.Counter[str]()
        self._stop = threading.Event()

    def __enter__(self) -> LockWaits:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        from sqlalchemy import create_engine

        engine = create_engine(self.url)
        query = ("SELECT a.wait_event, l.relation::regclass::text, split_part(a.query, ' ', 1), "
                 "substring(a.query from '(?:INTO|UPDATE|FROM) ([a-z_]+)') FROM pg_stat_activity a "
                 "LEFT JOIN pg_locks l ON l.pid = a.pid AND NOT l.granted "
                 "WHERE a.datname = current_database() AND a.pid <> pg_backend_pid() "
                 "AND a.wait_event_type = 'Lock'")
        try:
            with engine.connect() as conn:
                while not self._stop.wait(self.every):
                    self.samples += 1
                    self.waits.update(f"{event}{f' on {table}' if table else ''} ({verb} {target})"
                                      for event, table, verb, target in conn.exec_driver_sql(query))
                    conn.rollback()
        finally:
            engine.dispose()

    def describe(self) -> str:
        found = ", ".join(f"{what} {n:,}" for what, n in self.waits.most_common(4)) or "none"
        return (f"sessions waiting for a lock, sampled every {self.every * 1000:.0f} ms ({self.samples:,} samples): "
                f"{found}")


def drain_rate(rows: dict[str, Any]) -> float:
    """Events processed per second, from the span of their processed_at stamps."""
    done = sorted(epoch(r.processed_at) for r in rows.values() if r.processed_at is not None)
    return (len(done) - 1) / (done[-1] - done[0]) if len(done) > 1 else math.nan


def measure_two_event_workers(backend: Backend, plan: Plan, procs: Processes, report: Report, one: float,
                              one_busy: float) -> None:
    """Team mode: a backlog of new tickets, as above, drained by two events workers at once (each as `tickethub
    worker --queues events` runs it) against the one worker's rate: does a second events worker help, or do
    new tickets take turns on one row (ticket IDs)? Beside it, what bounds it on this machine: how busy the
    machine's CPUs were while one worker drained (two cannot go faster than the CPUs left allow), and the
    sessions found waiting for a lock while two drained (which rows they take turns on, if any)."""
    hub = backend.hub(procs)
    hub.start("api", plan=plan)
    ok = accepted(drive_max(hub.target, "two", plan, procs.running["api"].pid).sent)
    hub.wait_events("two", len(ok), 60, column="dispatched_at")
    progress(f"{backend.name}: two events workers draining {len(ok):,} events")
    hub.start("events", "events2", plan=plan)
    hub.wait_events("two", 1, 60)  # the workers have started: from here on the machine is draining
    with MachineBusy() as busy, LockWaits(hub.database_url) as waits:
        rows = hub.wait_events("two", len(ok), plan.drain_cap_s)
    procs.stop("api", "events", "events2")
    two = drain_rate(rows)
    tickets = len({r.ticket_id for r in rows.values() if r.ticket_id})
    cpus = os.cpu_count() or 1
    report.figure(backend.label, "two events workers vs one",
                  f"{two:,.0f} vs {one:,.0f} events/s = {two / one:.2f}x (target >= 1.5x); the machine's {cpus} CPUs "
                  f"were {one_busy:.0%} busy with one worker, {busy.fraction:.0%} with two (with the CPU one left, two "
                  f"could reach {1 / one_busy:.2f}x at most)", verdict(two / one >= 1.5),
                  f"a backlog of {len(ok):,} new tickets ({tickets:,} distinct ticket IDs assigned), drained by two "
                  f"events workers ({hub.event_threads} threads each) against one, each rate from the processed_at "
                  f"span; {waits.describe()}")
    report.note_deaths(backend.label, "the drain by two events workers", procs)


def measure_ack_and_dispatch(backend: Backend, plan: Plan, procs: Processes, report: Report,
                             bare_timed: list[Sent]) -> None:
    hub = backend.hub(procs)
    hub.start("api", "events", "beat", plan=plan)
    warm_up(hub, events_only=True)
    timed = asyncio.run(open_loop(hub.target, Webhooks("ack"), plan.ack_rate, plan.ack_s))
    hub_ok, bare_ok = accepted(timed), accepted(bare_timed)
    hub_lat = [s.latency for s in hub_ok] + [math.inf] * (len(timed) - len(hub_ok))
    bare_lat = [s.latency for s in bare_ok] + [math.inf] * (len(bare_timed) - len(bare_ok))
    p99, target = pct(hub_lat, 0.99), ACK_P99_TARGET[backend.name]
    report.figure(backend.label, f"ack latency at {plan.ack_rate}/s",
                  f"hub p50 {ms(pct(hub_lat, 0.5))} p99 {ms(p99)} vs bare p50 {ms(pct(bare_lat, 0.5))} p99 "
                  f"{ms(pct(bare_lat, 0.99))} (target p99 <= {ms(target)}){refusals(timed)}", verdict(p99 <= target),
                  f"{len(timed):,} webhooks on a fixed schedule over {plan.ack_s:.0f} s, each timed from when it was "
                  "due to its 202 (a server that falls behind is charged for the wait); events worker running, no "
                  "deliveries worker")
    rows = hub.wait_events("ack", len(hub_ok), 30)
    report_dispatch(backend.label, f"intake->dispatch at {plan.ack_rate}/s", hub_ok, rows, report)
    procs.stop("api", "events", "beat")
    report.note_deaths(backend.label, f"the {plan.ack_rate}/s run", procs)


def report_dispatch(backend: str, name: str, ok: list[Sent], rows: dict[str, Any], report: Report) -> None:
    total = [epoch(getattr(rows.get(s.msg_id), "processed_at", None)) - s.answered for s in ok]
    p99 = pct(total, 0.99)
    report.figure(backend, name, f"p50 {ms(pct(total, 0.5))} p99 {ms(p99)} (target p99 <= 50 ms)",
                  verdict(p99 <= 0.050),
                  "per event: inbox_events.processed_at (stamped by process_event once it has read the event; on "
                  "SQLite that is after it got the write lock) minus the client's clock at the 202 (one host, one "
                  "clock); the relay publishes what intake stored, with no write of its own")


def warm_up(hub: HubInstance, events_only: bool, count: int = 5) -> None:
    """A few events through before timing, so that no process is still starting (or connecting)."""
    sent = asyncio.run(open_loop(hub.target, Webhooks("warm"), 20, count / 20))
    rows = hub.wait_events("warm", len(accepted(sent)), 90, stall=90)  # 90 s: time for the sweeper to re-send
    if len(accepted(sent)) < count or any(r.processed_at is None for r in rows.values()):
        raise RuntimeError(f"warm-up events were not processed in 90 s{refusals(sent)}; the events worker's log "
                           f"ends:\n{hub.procs.tail('events', 8)}")
    if not events_only:
        run_complete(hub, "warm", len(rows), 90)


def run_complete(hub: HubInstance, prefix: str, count: int, cap: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """Wait until `count` events of the run have all five deliveries delivered, or `cap` seconds."""
    deadline = time.monotonic() + cap
    while True:
        rows, found = hub.events(prefix), hub.deliveries()
        complete = sum(sum(d.state == "delivered" for d in found.get(r.ticket_id, [])) == len(SUBSCRIBERS)
                       for r in rows.values() if r.ticket_id)
        if complete >= count or time.monotonic() > deadline:
            return rows, found
        hub.procs.check(*hub.procs.running)
        time.sleep(0.5)


def measure_end_to_end(backend: Backend, plan: Plan, procs: Processes, report: Report) -> None:
    """Light load first (what the path costs when nothing queues), then the target rate."""
    ports = [free_port() for _ in SUBSCRIBERS]
    procs.start("receivers", bench_argv("_receivers", ",".join(map(str, ports)), str(plan.receiver_delay_s)),
                child_env())
    for port in ports:
        wait_port(port, procs, "receivers")
    hub = backend.hub(procs, ports)
    hub.start("api", "events", "deliveries", "beat", plan=plan)
    warm_up(hub, events_only=False)
    for rate, seconds in ((plan.e2e_light_rate, plan.e2e_s), (plan.e2e_rate, plan.e2e_target_s)):
        progress(f"{backend.name}: {rate}/s for {seconds:.0f} s, five receivers at "
                 f"{plan.receiver_delay_s * 1000:.0f} ms")
        prefix = f"e2e{rate}"
        cpu_before = hub_cpu(procs)
        sent = asyncio.run(open_loop(hub.target, Webhooks(prefix), rate, seconds))
        offered_end = time.monotonic()
        rows, found = run_complete(hub, prefix, len(accepted(sent)), plan.e2e_cap_s)
        cpu = {name: used - cpu_before.get(name, 0.0) for name, used in hub_cpu(procs).items()}
        hub_rate, hub_cpu_ms = report_end_to_end(backend.label, plan, rate, sent, rows, found,
                                                 time.monotonic() - offered_end, report, cpu)
        report.note_deaths(backend.label, f"the end-to-end run at {rate}/s", procs)
    procs.stop("api", "events", "deliveries", "beat")
    measure_floors(backend.label, plan, ports, plan.e2e_rate, hub_rate, hub_cpu_ms, report)
    procs.stop("receivers")


HUB_ROLES = ("api", "events", "deliveries", "beat")


def hub_cpu(procs: Processes) -> dict[str, float]:
    """CPU seconds used so far by each hub process (a restarted one counts from its restart)."""
    used = {}
    for name in HUB_ROLES:
        proc = procs.running.get(name)
        if proc is not None and proc.poll() is None:
            used[name] = cpu_seconds(proc.pid)
    return used


def report_end_to_end(backend: str, plan: Plan, rate: int, sent: list[Sent], rows: dict[str, Any],
                      found: dict[str, Any], waited: float, report: Report,
                      cpu: dict[str, float]) -> tuple[float, float]:
    """Report the run; its deliveries per second and the hub's CPU ms per event."""
    from hub.config import DeliverySettings

    latencies, delivered_at = [], []
    for s in accepted(sent):
        row = rows.get(s.msg_id)
        done = [d for d in found.get(getattr(row, "ticket_id", None) or "", []) if d.state == "delivered"]
        delivered_at += [epoch(d.delivered_at) for d in done]
        latencies.append(max(epoch(d.delivered_at) for d in done) - epoch(min(d.first_accepted_at for d in done))
                         if len(done) == len(SUBSCRIBERS) else math.inf)
    p99 = pct(latencies, 0.99)
    third = max(len(latencies) // 3, 1)  # in the order sent: a backlog that grows shows in the last third
    growth = ", at the target rate the last third no worse than the first, 20% allowed for noise" * (
        rate == plan.e2e_rate)
    first_p99, last_p99 = pct(latencies[:third], 0.99), pct(latencies[-third:], 0.99)
    late = sum(math.isinf(x) for x in latencies)
    span = max(delivered_at) - min(delivered_at) if len(delivered_at) > 1 else math.nan
    threads, per_system = plan.delivery_concurrency, DeliverySettings().max_in_flight_per_system
    ceiling = min(threads, per_system * len(SUBSCRIBERS)) / plan.receiver_delay_s
    events = max(len(accepted(sent)), 1)
    per_event = {name: used * 1000 / events for name, used in cpu.items()}
    total = sum(per_event.values())
    report.figure(backend, f"hub CPU per event at {rate}/s",
                  f"{total:.1f} ms (target <= 6 ms): " + ", ".join(f"{n} {v:.1f}" for n, v in per_event.items()),
                  verdict(total <= 6.0),
                  "user + system CPU of every hub process (api, events worker, deliveries worker, beat) from the "
                  "start of the load until its events were delivered, over the events accepted (5 deliveries each)")
    report.figure(backend, f"end-to-end at {rate}/s",
                  f"p50 {ms(pct(latencies, 0.5))} p99 {ms(p99)}, first third p99 {ms(first_p99)}, last third p99 "
                  f"{ms(last_p99)} (target p99 <= 1 s{growth}); "
                  f"{late:,} of {len(latencies):,} events not fully delivered {waited:.0f} s after the load "
                  f"stopped{refusals(sent)}",
                  verdict(p99 <= 1.0 and (rate != plan.e2e_rate or last_p99 <= 1.2 * first_p99)),
                  f"per event (each opens a ticket, so 5 deliveries): max(deliveries.delivered_at) - "
                  f"first_accepted_at; {len(delivered_at):,} deliveries in {span:.1f} s = "
                  f"{len(delivered_at) / span:,.0f}/s against {rate * len(SUBSCRIBERS)}/s offered; delivery "
                  f"ceiling by Little's law min({threads} threads, {per_system} in flight x {len(SUBSCRIBERS)} "
                  f"systems) / {plan.receiver_delay_s:.1f} s = {ceiling:,.0f}/s")
    stages: dict[str, list[float]] = {"accepted->scheduled": [], "scheduled->last claim": [], "claim->answer": []}
    for ds in found.values():
        for d in ds:
            if d.state == "delivered" and d.first_accepted_at and d.started_at:
                stages["accepted->scheduled"].append(epoch(d.created_at) - epoch(d.first_accepted_at))
                stages["scheduled->last claim"].append(epoch(d.started_at) - epoch(d.created_at))
                stages["claim->answer"].append(epoch(d.delivered_at) - epoch(d.started_at))
    report.line("        where a delivery's time went (p50/p99): " + ", ".join(
        f"{name} {ms(pct(xs, 0.5))}/{ms(pct(xs, 0.99))}" for name, xs in stages.items() if xs))
    report_dispatch(backend, f"intake->dispatch at {rate}/s", accepted(sent), rows, report)
    return (len(delivered_at) / span if span else math.nan), total


def bench_backend(backend: Backend, plan: Plan, procs: Processes, report: Report, only_e2e: bool = False) -> None:
    report.line(f"\n== {backend.label}")
    if only_e2e:
        progress(f"{backend.name}: end to end")
        measure_end_to_end(backend, plan, procs, report)
        return
    progress(f"{backend.name}: bare endpoint")
    bare, bare_timed = measure_bare(backend, plan, procs)
    progress(f"{backend.name}: hub intake")
    count, drain = measure_intake_and_drain(backend, plan, procs, report, bare)
    progress(f"{backend.name}: raw Celery, {count:,} no-op tasks")
    folder = backend.tmp / f"{backend.name}-noop"
    folder.mkdir()
    threads = event_threads(isinstance(backend, Embedded))
    raw = noop_rate(backend.noop_broker(folder), folder, procs, count, plan.drain_cap_s, threads)
    report.figure(backend.label, "pipeline vs raw Celery",
                  f"hub {drain:,.0f} events/s vs no-op {raw:,.0f} tasks/s = {drain / raw:.2f}x (target >= 0.5x)",
                  verdict(drain / raw >= 0.5),
                  f"a backlog of {count:,} published events drained by the events worker (threads, {threads}, "
                  "prefetch 8, as `tickethub up` runs it; "
                  "the 5 deliveries each event publishes wait in the broker, no deliveries worker), rate from the "
                  "processed_at span; the same count of no-op tasks (JSON, late acks) on the same kind of broker "
                  "with the same worker options, timed by the first and last task")
    report.note_deaths(backend.label, "the drain", procs)
    progress(f"{backend.name}: acknowledgement latency")
    measure_ack_and_dispatch(backend, plan, procs, report, bare_timed)
    progress(f"{backend.name}: end to end")
    measure_end_to_end(backend, plan, procs, report)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a few seconds per part")
    parser.add_argument("--only", choices=["embedded", "team"])
    parser.add_argument("--only-end-to-end", action="store_true",
                        help="only the end-to-end runs and the delivery floors (a quicker loop for deliveries)")
    parser.add_argument("--pg", default="postgresql+psycopg://root@127.0.0.1:5432/test", help="admin URL")
    parser.add_argument("--amqp", default="amqp://guest:guest@127.0.0.1:5672")
    args = parser.parse_args()
    plan = QUICK if args.quick else Plan()

    def stop(_signum: int, _frame: object) -> None:
        for number in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C must not cut the cleanup short
            signal.signal(number, signal.SIG_IGN)
        raise KeyboardInterrupt

    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, stop)
    report, failed = Report(), False
    report.line(f"tickethub pipeline bench{' --quick' if args.quick else ''}: {os.cpu_count()} CPUs, load average "
                f"{os.getloadavg()[0]:.2f} at start (other work on this machine shares them); python "
                f"{sys.version.split()[0]}, {servers_stack()}")
    report.line(f"code: {code_version()}")
    with tempfile.TemporaryDirectory(prefix="th-bench-") as folder, contextlib.ExitStack() as cleanup:
        tmp = Path(folder)
        procs = Processes(tmp / "logs")
        try:  # processes stop here, before the ExitStack drops databases and virtual hosts
            backends: list[Backend] = []
            if args.only != "team":
                backends.append(Embedded("embedded", "embedded default: SQLite (WAL) + filesystem broker",
                                         cleanup, tmp))
            if args.only != "embedded":
                missing = team_missing(args.pg)
                if missing:
                    report.line(f"\n== PostgreSQL + RabbitMQ: skipped, {missing}")
                else:
                    backends.append(Team("team", "PostgreSQL + RabbitMQ", cleanup, tmp, args.pg, args.amqp))
            measure_client_ceiling(plan, procs, report)
            for backend in backends:
                try:
                    bench_backend(backend, plan, procs, report, args.only_end_to_end)
                except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
                    failed = True
                    report.line(f"  ERROR, {backend.name} stopped: {exc}")
                finally:
                    procs.stop()
                    report.note_deaths(backend.label, "the last part", procs)
        finally:
            procs.close()
    report.line("\n== summary")
    for backend_label, name, result in report.rows:
        report.line(f"  {result}  {backend_label:<52} {name}")
    for backend_label, death in report.deaths:
        report.line(f"  DIED  {backend_label:<52} {death[:200]}")
    report.line(f"load average at end {os.getloadavg()[0]:.2f}")
    return 1 if failed else 0


def code_version() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30).stdout.strip()

    changed = git("status", "--porcelain", "--untracked-files=no").splitlines()
    return f"git {git('rev-parse', '--short', 'HEAD') or '(unknown)'}" + (
        f" with uncommitted changes in {len(changed)} tracked file(s)" if changed else "")


def team_missing(pg: str) -> str | None:
    import shutil

    from sqlalchemy import create_engine, text

    if not shutil.which("rabbitmqctl"):
        return "rabbitmqctl is not on PATH (needed for a throwaway virtual host)"
    engine = create_engine(pg)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # any failure to reach PostgreSQL means: skip the team backend
        return f"PostgreSQL at {pg} does not answer ({type(exc).__name__})"
    finally:
        engine.dispose()
    return None


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1].startswith("_"):
        command, rest = sys.argv[1], sys.argv[2:]
        if command == "_receivers":
            receivers_main([int(p) for p in rest[0].split(",")], float(rest[1]))
        elif command == "_bare":
            bare_main(int(rest[0]), rest[1])
        elif command == "_floor":
            floor_main(rest[0], [int(p) for p in rest[1].split(",")], float(rest[2]), float(rest[3]), int(rest[4]))
        elif command == "_noop-worker":
            noop_worker_main(*rest)
    else:
        try:
            sys.exit(main())
        except KeyboardInterrupt:
            print("interrupted: every process, database and virtual host this bench started is gone", file=sys.stderr)
            sys.exit(130)
