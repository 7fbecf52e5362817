"""A real BottleCRM (PyPI django-crm 1.35) on loopback, for tests and scripts.

    with running_bottlecrm(tmp_dir) as crm:          # or crm = start_bottlecrm(tmp_dir) ... crm.stop()
        secret = crm.register_webhook("http://127.0.0.1:9000/hook", ["ticket.created", "ticket.updated"])
        crm.http.post("/api/cases/", json={"name": "Printer jams", "status": "New", "priority": "High"})

Costs, paid once per machine and reused: a virtual environment under .peers/bottlecrm/venv (django-crm
needs Python >= 3.12; 50-70 s, ~390 MB) and a migrated SQLite template .peers/bottlecrm/template.sqlite3
(150-240 s). Per run: the template is copied into the run folder, `runserver` starts on a free loopback port
(~3 s) and auth is bootstrapped through the real endpoints (~7 s). Settings: tests/peers/bottlecrm_settings.py
(test-only; it lifts the webhook SSRF guard). What the API does is written down in docs/peers/bottlecrm.md.

No Python >= 3.12 here raises PeerUnavailable (a reason to skip; CI turns it into a failure); anything
else that goes wrong raises PeerFailed with the command and the end of its output.
As a script, `python -m tests.peers.bottlecrm [--webhook URL]` starts one and prints its credentials.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.peers import harness
from tests.peers.harness import Interpreter  # part of this module's API, as before the move

REQUIREMENT = "django-crm==1.35.0"
HERE = Path(__file__).resolve().parent
PEER_DIR = HERE.parents[1] / ".peers" / "bottlecrm"
SETTINGS_MODULE = "bottlecrm_settings"  # tests/peers/bottlecrm_settings.py, put on the peer's PYTHONPATH
# (extra environment, command): the first that runs Python >= 3.12 is used
PYTHON_CANDIDATES: tuple[tuple[Mapping[str, str], tuple[str, ...]], ...] = (
    ({}, ("python3.13",)),
    ({}, ("python3.12",)),
    ({"PYENV_VERSION": "3.12.1"}, ("python3.12",)),
)
JWT_REMINT_AFTER = 50 * 60  # its access tokens live one hour
_ACCESS_TOKEN = re.compile(r"^access_token:\s+(\S+)\s*$", re.MULTILINE)


class PeerUnavailable(harness.PeerUnavailable):
    """This machine cannot run BottleCRM at all (no Python >= 3.12): skip, or fail under CI."""


class PeerFailed(harness.PeerFailed):
    """Installing, migrating, starting or bootstrapping BottleCRM went wrong; the message shows where."""


def find_python() -> Interpreter:
    """The first of PYTHON_CANDIDATES that runs and is Python >= 3.12."""
    return harness.find_python(PYTHON_CANDIDATES, (3, 12), needed_by=f"BottleCRM ({REQUIREMENT})",
                               unavailable=PeerUnavailable)


def _run(what: str, argv: Sequence[str], *, env: Mapping[str, str], cwd: Path | None = None,
         timeout: float) -> subprocess.CompletedProcess[str]:
    return harness.run(what, argv, env=env, cwd=cwd, timeout=timeout, failed=PeerFailed)


# ---- one-time costs: the virtual environment and the migrated template ------------------------------

def ensure_venv(peer_dir: Path = PEER_DIR) -> tuple[Path, float]:
    """The venv holding REQUIREMENT (reused when its marker says so) and the seconds spent installing."""
    venv, marker = peer_dir / "venv", peer_dir / "venv" / ".tickethub-installed"
    with harness.locked(peer_dir):
        if marker.exists() and marker.read_text().splitlines()[:1] == [REQUIREMENT]:
            return venv, 0.0
        python = find_python()
        started = time.monotonic()
        shutil.rmtree(venv, ignore_errors=True)
        _run("creating BottleCRM's venv", [*python.command, "-m", "venv", str(venv)], env=python.env, timeout=300)
        _run(f"installing {REQUIREMENT}", [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                                           "--disable-pip-version-check", REQUIREMENT],
             env=_clean_env(os.environ), timeout=1200)
        marker.write_text(f"{REQUIREMENT}\npython {python.version}\n")
        return venv, time.monotonic() - started


def ensure_template(venv: Path, peer_dir: Path = PEER_DIR) -> tuple[Path, float]:
    """A migrated SQLite database (built once per REQUIREMENT) and the seconds spent migrating."""
    template, marker = peer_dir / "template.sqlite3", peer_dir / "template.sqlite3.version"
    with harness.locked(peer_dir):
        if template.exists() and marker.exists() and marker.read_text().strip() == REQUIREMENT:
            return template, 0.0
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="bottlecrm-migrate-") as build:
            database = Path(build) / "template.sqlite3"
            _run("migrating BottleCRM's database", _django(venv, "migrate", "--noinput"),
                 env=_peer_env(database, Path(build)), cwd=Path(build), timeout=1800)
            shutil.copyfile(database, peer_dir / "template.sqlite3.partial")
        os.replace(peer_dir / "template.sqlite3.partial", template)
        marker.write_text(REQUIREMENT + "\n")
        return template, time.monotonic() - started


# ---- one running server -----------------------------------------------------------------------------

@dataclass
class BottleCRM(harness.PeerServer):
    """A running BottleCRM: `http` is an httpx client authorised with the personal access token. Fields
    venv, run_dir, process and port, and `logs()` and `stop()`, come from harness.PeerServer."""

    LOG = "runserver.log"
    email: str
    org_id: str = ""
    pat: str = ""
    jwt: str = ""
    jwt_minted: float = 0.0
    webhook_ids: dict[str, str] = field(default_factory=dict)  # url -> endpoint id
    timings: dict[str, float] = field(default_factory=dict)  # seconds: install, migrate, start, bootstrap
    _http: httpx.Client | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def database(self) -> Path:
        return self.run_dir / "bottlecrm.sqlite3"

    @property
    def http(self) -> httpx.Client:
        if self._http is None:
            self._http = httpx.Client(base_url=self.base_url, headers={"Authorization": f"Bearer {self.pat}"},
                                      timeout=30)
        return self._http

    def register_webhook(self, url: str, events: Sequence[str], description: str = "tickethub tests") -> str:
        """Subscribe `url` to `events` (needs the signed-in JWT: a PAT is refused); return the signing secret."""
        with self._as_admin() as admin:
            answer = admin.post("/api/webhooks/", json={"url": url, "events": list(events),
                                                        "description": description})
        body = _expect(answer, 201, "registering a webhook (POST /api/webhooks/)")
        self.webhook_ids[url] = body["id"]
        return str(body["secret"])

    def remove_webhook(self, url: str) -> None:
        """Delete the endpoint registered for `url` (an org may have at most 10)."""
        with self._as_admin() as admin:
            _expect(admin.delete(f"/api/webhooks/{self.webhook_ids.pop(url)}/"), 204, "deleting a webhook")

    def retry_due_webhooks(self, *, now: bool = False) -> int:
        """Run upstream's every-minute beat task once (nothing else retries a failed delivery here); with
        `now`, first make every pending delivery due instead of waiting out its back-off. Returns how many
        deliveries it sent."""
        code = "from webhooks.tasks import dispatch_due_deliveries as d; "
        if now:
            code += ("from webhooks.models import WebhookDelivery as W; from django.utils import timezone; "
                     "W.objects.filter(status='pending').update(next_attempt_at=timezone.now()); ")
        done = self.admin("shell", "-c", code + "print(d())")
        return int(done.stdout.strip().splitlines()[-1])

    def admin(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`django-admin ARGS` against this server's database and settings."""
        return _run(f"django-admin {args[0] if args else ''}", _django(self.venv, *args),
                    env=_peer_env(self.database, self.run_dir), cwd=self.run_dir, timeout=120)

    def _close_clients(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    # -- bootstrap: every step through the real commands and endpoints --------------------------------

    def bootstrap(self, org_name: str) -> None:
        started = time.monotonic()
        first = self._devlogin("--create")
        org = _expect(httpx.post(f"{self.base_url}/api/org/", json={"name": org_name}, timeout=30,
                                 headers={"Authorization": f"Bearer {first}"}), 201, "creating an org (POST /api/org/)")
        self.org_id = str(org["org"]["id"])
        self.jwt, self.jwt_minted = self._devlogin("--org", self.org_id), time.monotonic()
        with self._as_admin() as admin:
            token = _expect(admin.post("/api/profile/tokens/", json={"name": "tickethub"}), 201,
                            "minting a personal access token (POST /api/profile/tokens/)")
        if not str(token.get("token", "")).startswith("bcrm_pat_"):
            raise PeerFailed(f"POST /api/profile/tokens/ answered no bcrm_pat_ token: {sorted(token)}")
        self.pat = str(token["token"])
        self.timings["bootstrap"] = time.monotonic() - started

    def _devlogin(self, *args: str) -> str:
        printed = self.admin("devlogin", self.email, *args).stdout
        found = _ACCESS_TOKEN.search(printed)
        if not found:
            raise PeerFailed(f"`devlogin {self.email} {' '.join(args)}` printed no access_token:\n"
                             f"{harness.tail(printed)}")
        return found.group(1)

    def _as_admin(self) -> httpx.Client:
        if time.monotonic() - self.jwt_minted > JWT_REMINT_AFTER:
            self.jwt, self.jwt_minted = self._devlogin("--org", self.org_id), time.monotonic()
        return httpx.Client(base_url=self.base_url, headers={"Authorization": f"Bearer {self.jwt}"}, timeout=30)


def start_bottlecrm(run_dir: Path, *, email: str = "agent@example.com", org_name: str = "Tickethub Test",
                    peer_dir: Path = PEER_DIR, ready_timeout: float = 90.0) -> BottleCRM:
    """Install (once), copy the template (built once), start `runserver`, bootstrap an org, a JWT and a PAT."""
    venv, installing = ensure_venv(peer_dir)
    template, migrating = ensure_template(venv, peer_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, run_dir / "bottlecrm.sqlite3")
    started = time.monotonic()
    port = harness.free_port()
    with open(run_dir / "runserver.log", "wb") as log:
        process = subprocess.Popen(_django(venv, "runserver", f"127.0.0.1:{port}", "--noreload"), cwd=run_dir,
                                   env=_peer_env(run_dir / "bottlecrm.sqlite3", run_dir), stdout=log,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    crm = BottleCRM(venv, run_dir, process, port, email)
    crm.timings.update(install=installing, migrate=migrating)
    try:
        _wait_until_answering(crm, ready_timeout)
        crm.timings["start"] = time.monotonic() - started
        crm.bootstrap(org_name)
    except BaseException:
        crm.stop()
        raise
    return crm


def running_bottlecrm(run_dir: Path, **options: Any) -> AbstractContextManager[BottleCRM]:
    """`start_bottlecrm`, stopped on the way out."""
    return harness.running(start_bottlecrm, run_dir, **options)


# ---- shared pieces ----------------------------------------------------------------------------------

def _django(venv: Path, *args: str) -> list[str]:
    # -P: the working directory is not put on sys.path, so nothing in it can shadow django-crm's packages
    return [str(venv / "bin" / "python"), "-P", "-m", "django", *args]


def _clean_env(environ: Mapping[str, str]) -> dict[str, str]:
    dropped = {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "DJANGO_SETTINGS_MODULE", "PYENV_VERSION"}
    return {k: v for k, v in environ.items() if k not in dropped}


def _peer_env(database: Path, run_dir: Path) -> dict[str, str]:
    return {**_clean_env(os.environ), "PYTHONPATH": str(HERE), "DJANGO_SETTINGS_MODULE": SETTINGS_MODULE,
            "BOTTLECRM_DB_PATH": str(database), "BOTTLECRM_RUN_DIR": str(run_dir), "ENV_TYPE": "dev",
            "PYTHONUNBUFFERED": "1"}


def _wait_until_answering(crm: BottleCRM, timeout: float) -> None:
    harness.wait_until_answering(
        crm.process, lambda: httpx.get(f"{crm.base_url}/healthz/", timeout=2).status_code == 200,
        server="runserver", probe="GET /healthz/", log=crm.run_dir / "runserver.log", timeout=timeout,
        failed=PeerFailed)


def _expect(answer: httpx.Response, status: int, what: str) -> dict[str, Any]:
    if answer.status_code != status:
        raise PeerFailed(f"{what}: expected {status}, got {answer.status_code}: {answer.text[:500]}")
    body: dict[str, Any] = answer.json() if answer.content else {}
    return body


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Start a real BottleCRM on loopback and print its credentials.")
    parser.add_argument("--webhook", action="append", default=[], metavar="URL",
                        help="register URL for the ticket.* and contact.* events and print its secret")
    parser.add_argument("--dir", type=Path, help="run folder (default: a new temporary one)")
    options = parser.parse_args(argv)
    run_dir = options.dir or Path(tempfile.mkdtemp(prefix="bottlecrm-"))
    with running_bottlecrm(run_dir) as crm:
        print(f"base_url  {crm.base_url}\norg_id    {crm.org_id}\npat       {crm.pat}\njwt       {crm.jwt}\n"
              f"run_dir   {crm.run_dir}\ntimings   {harness.format_timings(crm.timings)}")
        for url in options.webhook:
            secret = crm.register_webhook(url, ["ticket.created", "ticket.updated", "ticket.comment_added",
                                                "contact.created", "contact.updated"])
            print(f"webhook   {url} secret {secret}")
        harness.serve_until_ctrl_c(crm)
    return 0


if __name__ == "__main__":
    sys.exit(main())
