"""End-to-end harness: real hub processes (API, worker, beat) on a chosen database and broker, local
HTTP receivers standing in for subscribed systems, and a signed-webhook sender."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from hub.core.signing import sign_standard

SECRET = "whsec_" + "dGVzdC1zZWNyZXQtZm9yLWUyZS10ZXN0cy1vbmx5IQ=="
OUT_SECRET = "whsec_" + "b3V0Ym91bmQtc2VjcmV0LWZvci1lMmUtdGVzdHMtb25seQ=="
TOKEN = "e2e-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def chromium() -> str:
    """Debian's Chromium for the browser tests: skipped where it is missing, failed under CI (which installs it)."""
    import shutil

    import pytest

    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    message = "Chromium is not installed (Debian: apt-get install chromium; .ci/run installs it)"
    if os.environ.get("CI") or os.environ.get("TICKETHUB_REQUIRE_SERVICES") == "1":
        pytest.fail(message)
    pytest.skip(message)


def wait_until(condition: Callable[[], Any], timeout: float = 30.0, interval: float = 0.1, what: str = "") -> Any:
    """Poll until `condition()` is truthy; fail with `what` after `timeout` seconds (a liveness bound)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(interval)


@dataclass
class Received:
    body: dict[str, Any]
    headers: dict[str, str]
    raw: bytes


@dataclass
class Receiver:
    """A subscribed system: records every POST; answers from a script (status, delay), then 200."""

    name: str
    port: int = field(default_factory=free_port)
    received: list[Received] = field(default_factory=list)
    script: list[tuple[int, float]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with receiver.lock:
                    receiver.received.append(Received(json.loads(body), dict(self.headers.items()), body))
                    status, delay = receiver.script.pop(0) if receiver.script else (200, 0.0)
                time.sleep(delay)
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.end_headers()
                self.wfile.write(json.dumps({"local_id": f"{receiver.name.upper()}-1"} if status < 300 else
                                            {"error": "scripted failure"}).encode())

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    def bodies(self) -> list[dict[str, Any]]:
        with self.lock:
            return [r.body for r in self.received]


@dataclass
class HubProcesses:
    """The hub as deployed: `tickethub api`, `tickethub worker`, `tickethub beat`, one config file."""

    workdir: Path
    database_url: str
    broker_url: str | None
    receivers: dict[str, Receiver]
    api_port: int = field(default_factory=free_port)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    queue_prefix: str = field(default_factory=lambda: f"e2e-{uuid.uuid4().hex[:8]}-")
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=10))

    @property
    def config(self) -> Path:
        return self.workdir / "tickethub.toml"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def write_config(self, **delivery: float) -> None:
        settings = {"backoff_base_seconds": 0.3, "backoff_cap_seconds": 2.0, "lease_seconds": 6.0,
                    "redispatch_after_seconds": 3.0, "sweep_interval_seconds": 1.0, "timeout_seconds": 15.0,
                    **delivery}
        lines = ["[hub]", f'database_url = "{self.database_url}"', f'data_dir = "{self.workdir / "var"}"',
                 f'queue_prefix = "{self.queue_prefix}"']
        if self.broker_url:
            lines.append(f'broker_url = "{self.broker_url}"')
        lines += ["", "[delivery]"] + [f"{k} = {v}" for k, v in settings.items()]
        lines += ["", "[systems.crm]", "origin = true", 'webhook_secrets_env = "E2E_CRM_SECRETS"']
        for name, receiver in self.receivers.items():
            lines += ["", f"[systems.{name}]", f'base_url = "{receiver.url}"', 'webhook_secrets_env = "E2E_OUT_SECRET"']
        self.config.write_text("\n".join(lines) + "\n")

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({"TICKETHUB_CONFIG": str(self.config), "TICKETHUB_API_TOKEN": TOKEN,
                    "E2E_CRM_SECRETS": SECRET, "E2E_OUT_SECRET": OUT_SECRET, "PYTHONUNBUFFERED": "1"})
        for key in ("TICKETHUB_DATABASE_URL", "TICKETHUB_BROKER_URL", "TICKETHUB_DATA_DIR"):
            env.pop(key, None)
        return env

    def run_cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "hub", *args], env=self.env(), capture_output=True,
                              text=True, timeout=120, check=False)

    def start(self, *names: str) -> None:
        commands = {
            "api": ["api", "--port", str(self.api_port)],
            "worker": ["worker", "--queues", "events,deliveries", "--concurrency", "8"],
            "beat": ["beat"],
            "up": ["up", "--port", str(self.api_port)],  # all of them, as one command (its own process group)
        }
        for name in names or ("api", "worker", "beat"):
            log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 (kept open for the child)
            self.procs[name] = subprocess.Popen([sys.executable, "-m", "hub", *commands[name]], env=self.env(),
                                                stdout=log, stderr=subprocess.STDOUT, start_new_session=name == "up")
        if {"api", "up"} & set(names or ("api",)):
            wait_until(self._api_up, 60, 0.2, "the API to answer /healthz")

    def _api_up(self) -> bool:
        try:
            return httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def kill_group(self, name: str) -> None:
        """SIGKILL a process started in its own group (`up`) and every child it started, all at once."""
        proc = self.procs.pop(name)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()
        self.http.close()

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in self.workdir.glob("*.log"))

    # ---- talking to it ----------------------------------------------------------------------------

    def send(self, msg_id: str, payload: dict[str, Any], system: str = "crm") -> httpx.Response:
        body = json.dumps(payload).encode()
        stamp = int(time.time())
        headers = {"content-type": "application/json", "webhook-id": msg_id, "webhook-timestamp": str(stamp),
                   "webhook-signature": sign_standard(SECRET, msg_id, stamp, body)}
        return self.http.post(f"{self.base}/webhooks/{system}", content=body, headers=headers)

    def get(self, path: str, **params: Any) -> httpx.Response:
        return self.http.get(f"{self.base}{path}", params=params, headers={"Authorization": f"Bearer {TOKEN}"})

    def post(self, path: str) -> httpx.Response:
        return self.http.post(f"{self.base}{path}", headers={"Authorization": f"Bearer {TOKEN}"})

    def deliveries(self, **params: Any) -> list[dict[str, Any]]:
        return list(self.get("/deliveries", **params).json()["deliveries"])


def crm_case(local_id: str, minute: int = 0, **fields: Any) -> dict[str, Any]:
    return {"local_id": local_id, "modified_at": f"2026-02-13T09:{minute:02d}:00Z", "author": "agent@example.com",
            "fields": fields}
