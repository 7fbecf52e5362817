"""A real Tryton 8.2 server (ERP + production + stock shipments + carriers) on loopback, for tests and scripts.

    with running_tryton(tmp_dir) as erp:             # or erp = start_tryton(tmp_dir) ... erp.stop()
        pid = erp.call("tickethub", "model.production.create",
                       [[{"product": erp.ids["pump"], "quantity": 1, "unit": erp.ids["unit"],
                          "warehouse": erp.ids["warehouse"], "location": erp.ids["production_location"]}], {}])

Costs, paid once per machine and reused: a virtual environment under .peers/tryton/venv (trytond and six
modules, all 8.2.*, ~10 s from the local wheel mirror, longer from PyPI) and a SQLite template
.peers/tryton/template/ (`trytond-admin --all` ~30 s, then a bootstrap through the real JSON-RPC ~5 s: a
currency, a company, the users `tickethub`, `planner` and `warehouse`, products, a carrier, a customer and
stock). Per run: the template is copied into the run folder and `trytond` starts on a free loopback port
(~2 s). What the JSON-RPC does is written down in docs/peers/tryton.md.

No Python >= 3.11 here raises PeerUnavailable (a reason to skip; CI turns it into a failure); anything
else that goes wrong raises PeerFailed with the command and the end of its output. A call that Tryton
answers with an error raises TrytonError (its `type` is the first element of the `error` array).
As a script, `python -m tests.peers.tryton` starts one and prints its URL, database, users and record ids.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from connectors.tryton.twin.wire import decode_object, encode_value
from tests.peers import harness
from tests.peers.harness import Interpreter  # part of this module's API, as before the move

SERIES = "8.2"
REQUIREMENTS = tuple(f"{name}=={SERIES}.*" for name in (
    "trytond", "trytond-party", "trytond-product", "trytond-stock", "trytond-sale", "trytond-production",
    "trytond-carrier", "trytond-stock-shipment-cost"))
# stock_shipment_cost is what puts a `carrier` field on stock.shipment.out (the carrier module alone does not)
MODULES = ("ir", "res", "party", "product", "stock", "sale", "production", "carrier", "stock_shipment_cost")
BOOTSTRAP_VERSION = "1"  # bump when bootstrap() changes: the template is rebuilt
HERE = Path(__file__).resolve().parent
PEER_DIR = HERE.parents[1] / ".peers" / "tryton"
DATABASE = "tickethub"
ADMIN_LOGIN, ADMIN_PASSWORD = "admin", "admin-Secret-0001"
# the hub's own user and two ordinary staff users; all get every group (admin itself has none: it is
# `administrator`), the company, and these passwords
USERS: dict[str, str] = {
    "tickethub": "tickethub-Secret-0001",
    "planner": "planner-Secret-0001",
    "warehouse": "warehouse-Secret-0001",
}
# (extra environment, command): the first that runs Python >= 3.11 is used
PYTHON_CANDIDATES: tuple[tuple[Mapping[str, str], tuple[str, ...]], ...] = (
    ({}, ("python3.11",)),
    ({}, ("python3",)),
    ({}, ("python3.12",)),
    ({"PYENV_VERSION": "3.12.1"}, ("python3.12",)),
    ({}, ("python3.13",)),
)


class PeerUnavailable(harness.PeerUnavailable):
    """This machine cannot run Tryton at all (no Python >= 3.11): skip, or fail under CI."""


class PeerFailed(harness.PeerFailed):
    """Installing, initialising, bootstrapping or starting Tryton went wrong; the message shows where."""


class TrytonError(RuntimeError):
    """Tryton answered a JSON-RPC call with `{"error": [type, details]}` (or a non-200 HTTP status)."""

    def __init__(self, method: str, status: int, error: Any):
        self.method, self.status, self.error = method, status, error
        self.type = str(error[0]) if isinstance(error, list) and error else str(error)
        self.details = error[1] if isinstance(error, list) and len(error) > 1 else None
        super().__init__(f"{method}: HTTP {status} {error!r}"[:2000])

    @property
    def message(self) -> str:
        """The human text: details[0] for UserError/AccessError/..., the details string otherwise."""
        if isinstance(self.details, list) and self.details:
            return str(self.details[0])
        return str(self.details or self.type)


def find_python() -> Interpreter:
    """The first of PYTHON_CANDIDATES that runs and is Python >= 3.11."""
    return harness.find_python(PYTHON_CANDIDATES, (3, 11), needed_by=f"Tryton {SERIES}",
                               unavailable=PeerUnavailable)


# ---- Tryton's JSON, as the twin encodes it (connectors/tryton/twin/wire.py) --------------------------------

def dumps(payload: Any) -> str:
    return json.dumps(payload, default=encode_value)


def loads(text: str) -> Any:
    return json.loads(text, object_hook=decode_object)


# ---- a JSON-RPC client: one session per login -----------------------------------------------------------

class RpcClient:
    """`POST /<db>/rpc/` with `{"id", "method", "params"}`; logs in (common.db.login) once per login."""

    def __init__(self, url: str, database: str, passwords: Mapping[str, str], timeout: float = 60):
        self.url, self.database, self.passwords = url, database, dict(passwords)
        self.sessions: dict[str, tuple[int, str]] = {}  # login -> (user id, session key)
        self._http = httpx.Client(base_url=url, timeout=timeout)
        self._next_id = 0

    def close(self) -> None:
        self._http.close()

    def post(self, method: str, params: Sequence[Any], *, authorization: str | None = None,
             database: str | None = None) -> httpx.Response:
        """One raw JSON-RPC request (for looking at exact answers); `database=""` posts to /rpc/."""
        self._next_id += 1
        headers = {"Content-Type": "application/json"}
        if authorization:
            headers["Authorization"] = authorization
        db = self.database if database is None else database
        return self._http.post(f"/{db}/rpc/" if db else "/rpc/", headers=headers,
                               content=dumps({"id": self._next_id, "method": method, "params": list(params)}))

    def login(self, login: str, password: str | None = None) -> tuple[int, str]:
        """common.db.login → [user_id, session, bus_url]; remembered for `call`."""
        answer = self.post("common.db.login", [login, {"password": password or self.passwords[login]}, "en"])
        result = self._result("common.db.login", answer)
        self.sessions[login] = (int(result[0]), str(result[1]))
        return self.sessions[login]

    def authorization(self, login: str) -> str:
        """The `Authorization: Session base64(login:user_id:session)` header value for `login`."""
        if login not in self.sessions:
            self.login(login)
        user_id, session = self.sessions[login]
        return "Session " + base64.b64encode(f"{login}:{user_id}:{session}".encode()).decode()

    def user_id(self, login: str) -> int:
        if login not in self.sessions:
            self.login(login)
        return self.sessions[login][0]

    def call(self, login: str, method: str, params: Sequence[Any]) -> Any:
        """Call `method` (e.g. `model.production.write`) as `login`; the decoded `result`, or TrytonError.
        A 401 (session expired or reset) logs in again once."""
        answer = self.post(method, params, authorization=self.authorization(login))
        if answer.status_code == 401:
            self.login(login)
            answer = self.post(method, params, authorization=self.authorization(login))
        return self._result(method, answer)

    @staticmethod
    def _result(method: str, answer: httpx.Response) -> Any:
        try:
            body = loads(answer.text)
        except ValueError:
            body = None
        if answer.status_code != 200 or not isinstance(body, dict):
            raise TrytonError(method, answer.status_code, answer.text[:1000])
        if "error" in body:
            raise TrytonError(method, answer.status_code, body["error"])
        return body["result"]


# ---- one-time costs: the virtual environment and the bootstrapped template ---------------------------

def _run(what: str, argv: Sequence[str], *, env: Mapping[str, str], cwd: Path | None = None,
         timeout: float) -> subprocess.CompletedProcess[str]:
    return harness.run(what, argv, env=env, cwd=cwd, timeout=timeout, failed=PeerFailed)


def ensure_venv(peer_dir: Path = PEER_DIR) -> tuple[Path, float]:
    """The venv holding REQUIREMENTS (reused when its marker says so) and the seconds spent installing."""
    venv, marker = peer_dir / "venv", peer_dir / "venv" / ".tickethub-installed"
    wanted = " ".join(REQUIREMENTS)
    with harness.locked(peer_dir):
        if marker.exists() and marker.read_text().splitlines()[:1] == [wanted]:
            return venv, 0.0
        python = find_python()
        started = time.monotonic()
        if not (venv / "bin" / "python").exists():
            _run("creating Tryton's venv", [*python.command, "-m", "venv", str(venv)], env=python.env,
                 timeout=300)
        # installing into the existing venv (not rebuilding it) keeps servers already running from it alive
        _run(f"installing {wanted}", [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                                      "--disable-pip-version-check", *REQUIREMENTS],
             env=_clean_env(os.environ), timeout=1200)
        marker.write_text(f"{wanted}\npython {python.version}\n")
        return venv, time.monotonic() - started


def ensure_template(venv: Path, peer_dir: Path = PEER_DIR) -> tuple[Path, dict[str, float]]:
    """A folder holding `<DATABASE>.sqlite` (initialised and bootstrapped once) and `bootstrap.json` (the
    ids of the bootstrap records), and the seconds spent building it ({} when reused)."""
    template, marker = peer_dir / "template", peer_dir / "template" / "version"
    wanted = f"{' '.join(REQUIREMENTS)} modules={','.join(MODULES)} bootstrap={BOOTSTRAP_VERSION}"
    with harness.locked(peer_dir):
        if marker.exists() and marker.read_text().strip() == wanted:
            return template, {}
        timings: dict[str, float] = {}
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="tryton-template-") as build_dir:
            build = Path(build_dir)
            (build / f"{DATABASE}.sqlite").touch()  # trytond-admin wants the file to exist
            port = harness.free_port()
            conf = _write_conf(build, port=port)
            (build / "admin-password").write_text(ADMIN_PASSWORD + "\n")
            _run("initialising Tryton's database (trytond-admin --all)",
                 [str(venv / "bin" / "trytond-admin"), "-c", str(conf), "-d", DATABASE, "--all",
                  "-u", *MODULES, "--activate-dependencies", "--email", "admin@example.com"],
                 env={**_clean_env(os.environ), "TRYTONPASSFILE": str(build / "admin-password")}, cwd=build,
                 timeout=1800)
            timings["init"] = time.monotonic() - started
            started = time.monotonic()
            process = _start_server(venv, build, conf)
            try:
                _wait_until_answering(process, f"http://127.0.0.1:{port}", build, 90)
                client = RpcClient(f"http://127.0.0.1:{port}", DATABASE, {ADMIN_LOGIN: ADMIN_PASSWORD, **USERS})
                try:
                    ids = bootstrap(client)
                except TrytonError as exc:
                    raise PeerFailed(f"bootstrapping the template: {exc}\n"
                                     f"{harness.tail_file(build / 'trytond.log')}") from exc
                finally:
                    client.close()
            finally:
                harness.terminate(process)
            timings["bootstrap"] = time.monotonic() - started
            shutil.rmtree(template, ignore_errors=True)
            partial = peer_dir / "template.partial"
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir()
            _snapshot(build / f"{DATABASE}.sqlite", partial / f"{DATABASE}.sqlite")
            (partial / "bootstrap.json").write_text(json.dumps(ids, indent=1, sort_keys=True) + "\n")
            (partial / "version").write_text(wanted + "\n")
            os.replace(partial, template)
        return template, timings


def bootstrap(client: RpcClient) -> dict[str, int]:
    """Everything the tests need, made once through the real JSON-RPC as admin; returns the record ids."""
    def create(model: str, values: list[dict[str, Any]], context: dict[str, Any] | None = None) -> list[int]:
        return list(client.call(ADMIN_LOGIN, f"model.{model}.create", [values, context or {}]))

    def search(model: str, domain: list[Any]) -> list[int]:
        return list(client.call(ADMIN_LOGIN, f"model.{model}.search", [domain, 0, None, [["id", "ASC"]], {}]))

    ids: dict[str, int] = {}
    ids["admin"] = client.login(ADMIN_LOGIN)[0]
    ids["currency"] = create("currency.currency", [{
        "name": "Euro", "code": "EUR", "symbol": "€", "rounding": Decimal("0.01"), "digits": 2,
        "rates": [["create", [{"date": dt.date(2020, 1, 1), "rate": Decimal(1)}]]]}])[0]
    ids["company_party"] = create("party.party", [{"name": "Tickethub Test Works"}])[0]
    ids["company"] = create("company.company", [{"party": ids["company_party"], "currency": ids["currency"]}])[0]
    company = {"company": ids["company"]}
    client.call(ADMIN_LOGIN, "model.res.user.write",
                [[ids["admin"]], {"companies": [["add", [ids["company"]]]], "company": ids["company"]}, {}])
    groups = search("res.group", [])
    for login, user_id in zip(USERS, create("res.user", [{
            "login": login, "name": login.title(), "password": password, "email": f"{login}@example.com",
            "groups": [["add", groups]], "companies": [["add", [ids["company"]]]], "company": ids["company"]}
            for login, password in USERS.items()]), strict=True):
        ids[f"user_{login}"] = user_id
    ids["unit"] = search("product.uom", [["symbol", "=", "u"]])[0]
    ids["warehouse"] = search("stock.location", [["type", "=", "warehouse"], ["code", "=", "WH"]])[0]
    warehouse = client.call(ADMIN_LOGIN, "model.stock.location.read", [[ids["warehouse"]], [
        "input_location", "output_location", "storage_location", "production_location", "lost_found_location"],
        {}])[0]
    for name in ("input_location", "output_location", "storage_location", "production_location",
                 "lost_found_location"):
        ids[name] = int(warehouse[name])
    ids["customer_location"] = search("stock.location", [["type", "=", "customer"]])[0]
    ids["supplier_location"] = search("stock.location", [["type", "=", "supplier"]])[0]

    def template(name: str, code: str, kind: str, price: str, cost: str, **extra: Any) -> dict[str, Any]:
        return {"name": name, "code": code, "type": kind, "default_uom": ids["unit"], "salable": True,
                "sale_uom": ids["unit"], "list_price": Decimal(price),
                "products": [["create", [{"cost_price": Decimal(cost)}]]], **extra}
    templates = create("product.template", [
        template("Pump 100", "PUMP-100", "goods", "120.00", "70.00", producible=True),
        template("Valve 20", "VALVE-20", "goods", "15.00", "5.00", producible=True),
        template("Courier delivery", "SHIP-STD", "service", "9.50", "0"),
    ], company)
    for key, template_id in zip(("pump", "valve", "shipping_product"), templates, strict=True):
        ids[key] = search("product.product", [["template", "=", template_id]])[0]
        ids[f"{key}_template"] = template_id
    ids["carrier_party"] = create("party.party", [{"name": "Speedy Couriers"}])[0]
    ids["carrier"] = create("carrier", [{"party": ids["carrier_party"], "carrier_product": ids["shipping_product"]}],
                            company)[0]
    ids["customer"] = create("party.party", [{
        "name": "Acme Pumps Ltd",
        "contact_mechanisms": [["create", [{"type": "email", "value": "ops@acme.example"},
                                           {"type": "phone", "value": "+44 20 7946 0000"}]]],
        "addresses": [["create", [{"street": "1 Dock Road", "postal_code": "E1 1AA", "city": "London"}]]],
    }])[0]
    ids["customer_address"] = search("party.address", [["party", "=", ids["customer"]]])[0]
    # stock in the storage zone: 100 valves and 20 pumps, so assigning productions and shipments can succeed
    moves = create("stock.move", [{
        "product": ids[key], "unit": ids["unit"], "quantity": quantity, "from_location": ids["supplier_location"],
        "to_location": ids["storage_location"], "unit_price": Decimal("5.00"), "currency": ids["currency"],
        "company": ids["company"]} for key, quantity in (("valve", 100.0), ("pump", 20.0))], company)
    client.call(ADMIN_LOGIN, "model.stock.move.do", [moves, company])
    return ids


# ---- one running server -------------------------------------------------------------------------------

@dataclass
class Tryton(harness.PeerServer):
    """A running Tryton: `call(login, method, params)` speaks JSON-RPC as one of `users`. Fields venv,
    run_dir, process and port, and `logs()` and `stop()`, come from harness.PeerServer."""

    LOG = "trytond.log"
    database: str
    users: dict[str, str]  # login -> password (admin included)
    ids: dict[str, int]  # bootstrap records: company, currency, warehouse, pump, valve, carrier, customer, ...
    timings: dict[str, float] = field(default_factory=dict)  # seconds: install, init, bootstrap, start
    _client: RpcClient | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def rpc_url(self) -> str:
        return f"{self.url}/{self.database}/rpc/"

    @property
    def client(self) -> RpcClient:
        if self._client is None:
            self._client = RpcClient(self.url, self.database, self.users)
        return self._client

    def call(self, login: str, method: str, params: Sequence[Any]) -> Any:
        """JSON-RPC `method` as `login`, e.g. call("tickethub", "model.sale.sale.read", [[1], ["state"], {}])."""
        return self.client.call(login, method, params)

    @property
    def context(self) -> dict[str, Any]:
        """The context every model call needs: without `company`, records of company-bound models (production,
        shipments, sales) fail the "User in companies" rule and defaults that read the company are empty."""
        return {"company": self.ids["company"]}

    def user_id(self, login: str) -> int:
        return self.client.user_id(login)

    def _close_clients(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def start_tryton(run_dir: Path, *, peer_dir: Path = PEER_DIR, ready_timeout: float = 90.0) -> Tryton:
    """Install (once), copy the template (built once), start `trytond` on a free loopback port."""
    venv, installing = ensure_venv(peer_dir)
    template, building = ensure_template(venv, peer_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    shutil.copyfile(template / f"{DATABASE}.sqlite", run_dir / f"{DATABASE}.sqlite")
    ids = json.loads((template / "bootstrap.json").read_text())
    port = harness.free_port()
    process = _start_server(venv, run_dir, _write_conf(run_dir, port=port))
    erp = Tryton(venv, run_dir, process, port, DATABASE, {ADMIN_LOGIN: ADMIN_PASSWORD, **USERS}, ids)
    erp.timings.update(install=installing, init=building.get("init", 0.0), bootstrap=building.get("bootstrap", 0.0))
    try:
        _wait_until_answering(process, erp.url, run_dir, ready_timeout)
    except BaseException:
        erp.stop()
        raise
    erp.timings["start"] = time.monotonic() - started
    return erp


def running_tryton(run_dir: Path, **options: Any) -> AbstractContextManager[Tryton]:
    """`start_tryton`, stopped on the way out."""
    return harness.running(start_tryton, run_dir, **options)


# ---- shared pieces ------------------------------------------------------------------------------------

def _write_conf(folder: Path, *, port: int) -> Path:
    conf = folder / "trytond.conf"
    conf.write_text(f"[database]\nuri = sqlite://\npath = {folder}\n\n[web]\nlisten = 127.0.0.1:{port}\n")
    return conf


def _snapshot(source: Path, target: Path) -> None:
    """Copy a SQLite database Tryton runs in WAL mode: the backup API folds the -wal file in (a plain file
    copy after the server stopped would lose every committed write still sitting in the -wal file)."""
    src, dst = sqlite3.connect(source), sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()


def _start_server(venv: Path, folder: Path, conf: Path) -> subprocess.Popen[bytes]:
    with open(folder / "trytond.log", "ab") as log:
        return subprocess.Popen([str(venv / "bin" / "trytond"), "-c", str(conf), "-d", DATABASE], cwd=folder,
                                env=_clean_env(os.environ), stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)


def _clean_env(environ: Mapping[str, str]) -> dict[str, str]:
    dropped = {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYENV_VERSION", "TRYTOND_CONFIG", "TRYTONPASSFILE"}
    return {**{k: v for k, v in environ.items() if k not in dropped and not k.startswith("TRYTOND_")},
            "PYTHONUNBUFFERED": "1"}


def _wait_until_answering(process: subprocess.Popen[bytes], url: str, folder: Path, timeout: float) -> None:
    """Until `common.server.version` on /rpc/ answers (the pool for -d is loaded before the server listens)."""
    body = dumps({"id": 0, "method": "common.server.version", "params": []})

    def answers() -> bool:
        answer = httpx.post(f"{url}/rpc/", content=body, headers={"Content-Type": "application/json"}, timeout=2)
        return answer.status_code == 200 and "result" in answer.json()

    harness.wait_until_answering(process, answers, server="trytond", probe="common.server.version",
                                 log=folder / "trytond.log", timeout=timeout, failed=PeerFailed)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Start a real Tryton 8.2 on loopback and print its details.")
    parser.add_argument("--dir", type=Path, help="run folder (default: a new temporary one)")
    options = parser.parse_args(argv)
    run_dir = options.dir or Path(tempfile.mkdtemp(prefix="tryton-"))
    with running_tryton(run_dir) as erp:
        print(f"url       {erp.url}\nrpc       {erp.rpc_url}\ndatabase  {erp.database}\nrun_dir   {erp.run_dir}")
        for login, password in erp.users.items():
            print(f"user      {login} / {password}")
        print("ids       " + ", ".join(f"{k}={v}" for k, v in sorted(erp.ids.items())))
        print(f"timings   {harness.format_timings(erp.timings)}")
        harness.serve_until_ctrl_c(erp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
