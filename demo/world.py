"""The demo's world: five sandbox twins on loopback ports, the hub's configuration for them, `tickethub up` as a
child process, and the hands and eyes of the story (a system's signed change notice, the hub's HTTP API)."""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from connectors.generic.twin import GenericTwin
from connectors.kuaidi100.twin import Kuaidi100Twin
from hub.core.signing import sign_standard

GENERIC_SYSTEMS = ("crm", "erp", "mes", "wms")
SKEW_SECONDS = 2.0  # [hub] clock_skew_seconds: evidence this close after a status claim still counts for it
MARKER = ".tickethub-demo"  # a work directory the demo made, and may empty on the next run


class DemoError(Exception):
    """The demo cannot go on: what went wrong, for the person who ran it."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_taken(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


class _Served:
    """A twin's `handle(httpx.Request) -> httpx.Response` behind a real HTTP server on a loopback port."""

    def __init__(self, handle: Callable[[httpx.Request], httpx.Response]):
        served = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                request = httpx.Request(self.command, f"http://127.0.0.1{self.path}",
                                        headers=list(self.headers.items()), content=body)
                response = served.handle(request)
                content = response.read()
                self.send_response(response.status_code)
                for key, value in response.headers.items():
                    if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(key, value)
                self.send_header("content-length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = _answer  # noqa: N815 (http.server's naming)

            def log_message(self, *args: Any) -> None:
                pass

        self.handle = handle
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class World:
    """Everything the demo runs. `start()` brings it up; `stop()` takes it down (the work directory stays)."""

    workdir: Path
    port: int
    # the API token: $TICKETHUB_API_TOKEN when set (a test, a script), else one made for this run
    token: str = field(default_factory=lambda: os.environ.get("TICKETHUB_API_TOKEN") or secrets.token_urlsafe(24))
    export_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    secrets_: dict[str, str] = field(default_factory=lambda: {name: _secret() for name in GENERIC_SYSTEMS})
    courier_key: str = field(default_factory=lambda: secrets.token_hex(16))
    courier_customer: str = field(default_factory=lambda: secrets.token_hex(16).upper())
    courier_salt: str = field(default_factory=lambda: secrets.token_hex(12))
    twins: dict[str, GenericTwin] = field(default_factory=dict)
    courier: Kuaidi100Twin | None = None
    servers: dict[str, _Served] = field(default_factory=dict)
    hub: subprocess.Popen[bytes] | None = None
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=15))
    mappings_dir: Path | None = None  # other mapping files than the shipped ones (a test's)
    extra_config: str = ""  # more TOML appended to the configuration (a test's [console] users, say)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def config(self) -> Path:
        return self.workdir / "tickethub.toml"

    @property
    def report_dir(self) -> Path:
        return self.workdir / "reports"

    # ---- up and down ---------------------------------------------------------------------------------

    def start(self, on_step: Callable[[str], None] = lambda _: None) -> None:
        self._prepare_workdir()
        if port_taken(self.port):
            raise DemoError(f"port {self.port} is in use: give the demo another with --port")
        for name in GENERIC_SYSTEMS:
            twin = GenericTwin(name, self.secrets_[name], token=self.export_token)
            self.twins[name] = twin
            self.servers[name] = _Served(twin.handle)
        self.courier = Kuaidi100Twin(self.courier_key, self.courier_customer, push_client=httpx.Client(timeout=15))
        self.servers["courier"] = _Served(self.courier.handle)
        on_step("twins of the CRM, ERP, MES, WMS and courier listening on " +
                ", ".join(f"{name} {server.url}" for name, server in self.servers.items()))
        self.config.write_text(self._config_text(), encoding="utf-8")
        log = (self.workdir / "hub.log").open("ab")
        argv = [sys.executable, "-m", "hub", "--log-level", "INFO", "up", "--port", str(self.port)]
        self.hub = subprocess.Popen(argv, env=self.env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        on_step(f"tickethub up (pid {self.hub.pid}) on {self.base}, embedded SQLite in {self.workdir}")
        self.wait(self._ready, 90, "the hub to answer /readyz (see hub.log)")

    def stop(self) -> None:
        if self.hub is not None and self.hub.poll() is None:
            os.killpg(self.hub.pid, signal.SIGTERM)
            try:
                self.hub.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.hub.pid, signal.SIGKILL)
                self.hub.wait(10)
        for server in self.servers.values():
            server.stop()
        if self.courier is not None:
            self.courier.close()
        self.http.close()

    def alive(self) -> bool:
        return self.hub is not None and self.hub.poll() is None

    def env(self) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith("TICKETHUB_")}
        env.update({"TICKETHUB_CONFIG": str(self.config), "TICKETHUB_API_TOKEN": self.token,
                    "DEMO_EXPORT_TOKEN": self.export_token, "DEMO_K100_KEY": self.courier_key,
                    "DEMO_K100_CUSTOMER": self.courier_customer, "DEMO_K100_SALT": self.courier_salt,
                    "PYTHONUNBUFFERED": "1"})
        env.update({f"DEMO_{name.upper()}_SECRET": secret for name, secret in self.secrets_.items()})
        return env

    def _prepare_workdir(self) -> None:
        if self.workdir.exists() and any(self.workdir.iterdir()):
            if not (self.workdir / MARKER).exists():
                raise DemoError(f"{self.workdir} holds files the demo did not make: give it an empty or new "
                                "directory with --workdir")
            shutil.rmtree(self.workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / MARKER).write_text("made by `tickethub demo`; emptied by its next run\n")

    def _config_text(self) -> str:
        lines = ["# written by `tickethub demo`: the hub between five sandbox twins on loopback ports", "[hub]",
                 f'database_url = "sqlite:///{self.workdir / "hub.db"}"', f'data_dir = "{self.workdir / "var"}"',
                 f"clock_skew_seconds = {SKEW_SECONDS}",
                 *([f'mappings_dir = "{self.mappings_dir}"'] if self.mappings_dir else []), "",
                 "[delivery]", "backoff_base_seconds = 0.3", "backoff_cap_seconds = 2.0",
                 "sweep_interval_seconds = 0.5", "", "[workflow]", "dwell_check_seconds = 5", "",
                 "[reconcile]", "enabled = false  # the demo runs it itself, in step 6",
                 f'report_dir = "{self.report_dir}"', ""]
        for name in GENERIC_SYSTEMS:
            url = self.servers[name].url
            lines += [f"[systems.{name}]", 'type = "generic"', f'base_url = "{url}/hub"',
                      f'export_url = "{url}/export"', 'credentials_env = "DEMO_EXPORT_TOKEN"',
                      f'webhook_secrets_env = "DEMO_{name.upper()}_SECRET"']
            lines += ["origin = true", ""] if name == "crm" else [""]
        lines += ["[systems.courier]", 'type = "kuaidi100"', f'base_url = "{self.servers["courier"].url}"',
                  'credentials_env = "DEMO_K100_KEY"', 'customer_env = "DEMO_K100_CUSTOMER"',
                  'webhook_secrets_env = "DEMO_K100_SALT"', f'callback_url = "{self.base}/webhooks/courier"', ""]
        return "\n".join(lines) + self.extra_config

    # ---- the story's hands ---------------------------------------------------------------------------

    def notify(self, system: str, local_id: str) -> float:
        """The system POSTs its signed change notice for the record to the hub; when it was accepted
        (time.monotonic())."""
        body = json.dumps(self.twins[system].notice(local_id), ensure_ascii=False).encode()
        msg_id, stamp = f"{system}-{secrets.token_hex(8)}", int(time.time())
        answer = self.http.post(f"{self.base}/webhooks/{system}", content=body, headers={
            "content-type": "application/json", "webhook-id": msg_id, "webhook-timestamp": str(stamp),
            "webhook-signature": sign_standard(self.secrets_[system], msg_id, stamp, body)})
        if answer.status_code != 202:
            raise DemoError(f"the hub did not accept {system}'s notice: {answer.status_code} {answer.text}")
        return time.monotonic()

    def reconcile(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "hub", "reconcile"], env=self.env(), capture_output=True,
                              text=True, timeout=300, check=False)

    # ---- the story's eyes ----------------------------------------------------------------------------

    def get(self, path: str, **params: Any) -> Any:
        answer = self.http.get(f"{self.base}{path}", params=params, headers={"Authorization": f"Bearer {self.token}"})
        return answer.json() if answer.status_code == 200 else None

    def linked(self, system: str, local_id: str) -> str | None:
        found = self.get("/tickets", system=system, local_id=local_id)
        return found["ticket_id"] if found else None

    def ticket(self, ticket_id: str) -> dict[str, Any]:
        return self.get(f"/tickets/{ticket_id}") or {}

    def golden(self, ticket_id: str, name: str) -> Any:
        return (self.ticket(ticket_id).get("fields", {}).get(name) or {}).get("value")

    def history(self, ticket_id: str) -> list[dict[str, Any]]:
        return list((self.get(f"/tickets/{ticket_id}/history") or {}).get("entries", []))

    def wait(self, condition: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            if not self.alive() and self.hub is not None:
                raise DemoError(f"the hub stopped (exit {self.hub.returncode}) while waiting for {what}; see "
                                f"{self.workdir / 'hub.log'}")
            if time.monotonic() > deadline:
                raise DemoError(f"gave up after {timeout:.0f} s waiting for {what}; see {self.workdir / 'hub.log'}")
            time.sleep(0.02)

    def _ready(self) -> bool:
        try:
            return self.http.get(f"{self.base}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False
