"""The sandbox twin of Tryton 8.2: one database in memory, its JSON-RPC served as an ASGI app.

It answers the subset of JSON-RPC the hub's Tryton connector uses with the real server's paths, status
codes, bodies and JSON classes, checked call by call against a real trytond 8.2 on SQLite (with party,
product, stock, sale, production and carrier); where a rule comes from trytond's source, the module that
holds it names the file. It has its own users, clock and state, and does no I/O at import or construction.

    twin = TrytonState()                                        # database "tickethub", admin/admin
    twin.add_user("mes", "mes-password-1")
    product = twin.create("product.product", "admin", code="PUMP-100", name="Pump")
    with twin.http_client() as http:                           # or serve `twin.app` with uvicorn
        session = TrytonSession(http, "http://tryton.sandbox", "tickethub", "mes", "mes-password-1")
    pid = twin.create("production", "admin", product=product, quantity=2.0, reference="TH-1")
    twin.button("production", pid, "wait", "admin")            # behind the hub's back
    twin.edit("production", pid, "admin", stamp=twin.clock.now() - timedelta(seconds=30), reference="late")
    with twin.transaction("admin") as tx:                      # write_date = its start, visible at commit
        tx.edit("production", pid, reference="TH-2")
        twin.advance(5)
    twin.fail_next(1, error=("ConcurrencyException", "Records were modified in the meanwhile"))

Emulated: `POST /<db>/rpc/` and `POST /rpc/` (`common.server.version`, `common.db.list`); `common.db.login`
/`logout` and `Authorization: Session base64(login:uid:token)` (401 with an empty body when it is wrong,
werkzeug's 401 page for a wrong password, 429 once a login failed six times in a row); on the models in
`sandbox_models`: `create`, `read` (dotted names come back as `"product.": {…}`), `write` and the buttons
that change a state (both check `_timestamp` in the context), `search`, `search_read`, `search_count`
(domains and orders as SQLite runs trytond's SQL, `sandbox_domain`), One2Many values (`[["create", […]]]`,
write, delete, add, remove), `res.user.get_preferences(true)`. Every record has create/write date and uid,
`rec_name`, `last_modified_at` and `_timestamp`; write_date stays null after create except where the real
create writes again (party, contact mechanism, user). Errors are the real ones: UserError (access refusals,
record rules, readonly fields and refused buttons are all UserErrors on the wire), ConcurrencyException,
LoginException, a Python error's text for an unknown model or field or a wrong value type, 403 for an unknown
method, 422 for a missing context or duplicate ids; with no JSON-RPC `id`, HTTP 400/403/423/500 instead.
Values: booleans read back 0/1, floats as floats, Decimal/date/datetime as Tryton's `{"__class__": …}`.

Models: production, stock.shipment.out (with the `carrier` field of the module stock_shipment_cost, which
the project's real peer installs), sale.sale with minimal sale.line (a sale's total is the sum of quantity ×
unit price, no taxes; without lines, what the helpers set), party.party (addresses, contact mechanisms, and
phone/email as its first ones, settable at create only), party.address, party.contact_mechanism,
product.product (made by the helpers: the real one takes code and name from a template), carrier, res.user,
and the company, currency, unit and warehouse locations a fresh database has, with the real ids.

Left out (the HTTP layer answers 501, so nobody mistakes them for real behaviour): `delete`, `copy`,
`fields_get`, `default_get`, on_change calls, wizards, reports, `system.*`, the REST API and cookie sessions,
the buttons the hub does not use (`process`, `assign_wizard`, …), dotted domains on x2many fields and
Many2One leaves compared with text. Silently simpler than real: invoices, taxes, stock moves and quantities
(assigning always succeeds); field domains beyond "the linked record exists" (the real error also carries
the domain); record rules other than "User in companies"; groups (a user is an administrator or not, may
write or not); the random delay after a failed login; session expiry (call `expire_sessions`); ordering by a
Many2One uses the target's record name; an unknown database's 503 names no file path.
"""

from __future__ import annotations

import datetime as dt
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from connectors.tryton.twin.store import Actor, Store, TrytonError

__all__ = ["TrytonClock", "TrytonError", "TrytonState", "TwinTransaction", "TwinUser"]

DATABASE = "tickethub"
MAX_ATTEMPTS = 5  # [session] max_attempt: a sixth failure in a row answers 429
# a fresh 8.2 database's locations, with the ids trytond-admin gives them
LOCATIONS = [("Input Zone", "IN", "storage"), ("Output Zone", "OUT", "storage"), ("Storage Zone", "STO", "storage"),
             ("Lost and Found", None, "lost_found"), ("Warehouse", "WH", "warehouse"), ("Supplier", "SUP", "supplier"),
             ("Customer", "CUS", "customer"), ("Transit", None, "storage"), ("Production", "PROD", "production")]


class TrytonClock:
    """The twin's time, naive UTC as Tryton stores it: starts at `start` (default: the wall clock at
    construction) and moves only when told to, except that each transaction's stamp moves it on by `tick`, so
    stamps are distinct and ordered as the real one's are, a few ms apart."""

    def __init__(self, start: dt.datetime | None = None, tick: dt.timedelta = dt.timedelta(milliseconds=1)):
        self._now = _naive_utc(start or dt.datetime.now(dt.UTC))
        self._tick = tick
        self._lock = threading.Lock()

    def now(self) -> dt.datetime:
        with self._lock:
            return self._now

    def stamp(self) -> dt.datetime:
        with self._lock:
            self._now += self._tick
            return self._now

    def advance(self, seconds: float) -> dt.datetime:
        with self._lock:
            self._now += dt.timedelta(seconds=seconds)
            return self._now

    def set(self, when: dt.datetime) -> None:
        with self._lock:
            self._now = _naive_utc(when)


def _naive_utc(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(dt.UTC).replace(tzinfo=None) if moment.tzinfo else moment


@dataclass
class TwinUser:
    id: int
    login: str
    password: str
    name: str | None
    admin: bool = False
    can_write: bool = True

    @property
    def actor(self) -> Actor:
        return Actor(self.id, self.admin, self.can_write)


@dataclass
class Fault:
    """What `fail_next` asked for: the next `remaining` matching calls wait, then answer the fault."""

    remaining: int
    status: int | None
    error: list[Any] | None
    delay_seconds: float | None
    method: str | None


@dataclass
class TwinTransaction:
    """Writes made as `user` in one transaction that started at `stamp`: every write_date it sets is that
    start time, and none of it is visible until the `with` block ends (trytond on PostgreSQL stamps
    CURRENT_TIMESTAMP, the transaction's start). `ids` holds what its creates made, after the commit."""

    twin: TrytonState
    user: TwinUser
    stamp: dt.datetime
    ops: list[Callable[[], Any]] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)

    def create(self, model: str, **values: Any) -> None:
        self.ops.append(lambda: self.ids.extend(
            self.twin.store.create(model, [values], self.user.actor, self.stamp, {"company": 1}, trusted=True)))

    def edit(self, model: str, record_id: int, **values: Any) -> None:
        self.ops.append(lambda: self.twin.store.write(model, [record_id], values, self.user.actor, self.stamp, {},
                                                      trusted=True))

    def button(self, model: str, record_id: int, name: str) -> None:
        self.ops.append(lambda: self.twin.store.button(model, [record_id], name, self.user.actor, self.stamp,
                                                       self.stamp.date(), {}))


class TrytonState:
    app: Any  # the HTTP face, set by `connectors.tryton.twin.TrytonTwin`

    """One Tryton database: `app` serves it over HTTP; the methods below are the tests' control panel."""

    def __init__(self, *, database: str = DATABASE, admin_password: str = "admin", company: str = "Tickethub",
                 clock: TrytonClock | None = None):

        self.database = database
        self.clock = clock or TrytonClock()
        self.lock = threading.RLock()  # held for every read and write of the state below
        self.store = Store()
        self._users: dict[int, TwinUser] = {}
        self._sessions: dict[str, int] = {}  # token -> user id
        self._failed_logins: dict[str, int] = {}  # login -> failures in a row
        self._faults: list[Fault] = []
        root = TwinUser(0, "root", secrets.token_hex(16), "Root")
        self._users[0] = root
        self._seed(root)
        self.add_user("admin", admin_password, None, admin=True)

    def _seed(self, root: TwinUser) -> None:
        """What trytond-admin and a company setup leave behind: root (inactive), a company and its currency,
        the unit, the warehouse locations."""
        stamp = self.clock.stamp()
        add = self.store.create
        self.store.tables["res.user"][0] = {"id": 0, "login": "root", "name": "Root", "active": False,
                                            "create_date": stamp, "create_uid": 0, "write_date": None,
                                            "write_uid": None}
        add("product.uom", [{"name": "Unit", "symbol": "u"}], root.actor, stamp, {}, trusted=True)
        for name, code, kind in LOCATIONS:
            add("stock.location", [{"name": name, "code": code, "type": kind}], root.actor, stamp, {}, trusted=True)

    # -- users and sessions ------------------------------------------------------------------------

    def add_user(self, login: str, password: str, name: str | None = None, *, admin: bool = False,
                 can_write: bool = True) -> int:
        """A user who may log in; their id. `admin`: what the administrator may do besides (cancel a done
        production); `can_write=False`: a user in no group, who may read but not change anything."""
        with self.lock:
            if any(u.login == login for u in self._users.values()):
                raise ValueError(f"Tryton sandbox twin: a user {login!r} exists already")
            stamp = self.clock.stamp()
            creator = self._users.get(1, self._users[0])
            [uid] = self.store.create("res.user", [{"login": login, "name": name}], creator.actor, stamp, {},
                                      trusted=True)
            row = self.store.tables["res.user"][uid]
            row["write_date"], row["write_uid"] = stamp, creator.id  # the password hash is written after create
            self._users[uid] = TwinUser(uid, login, password, name, admin, can_write)
            if uid == 1:
                self._seed_company(self._users[1])
            return uid

    def _seed_company(self, admin: TwinUser) -> None:
        stamp = self.clock.stamp()
        self.store.create("currency.currency", [{"name": "Euro", "code": "EUR"}], admin.actor, stamp, {},
                          trusted=True)
        [party] = self.store.create("party.party", [{"name": "Tickethub"}], admin.actor, stamp, {}, trusted=True)
        self.store.create("company.company", [{"party": party}], admin.actor, stamp, {}, trusted=True)

    def user(self, who: str | int) -> TwinUser:
        """A user by login or id."""
        found = self._users.get(who) if isinstance(who, int) else next(
            (u for u in self._users.values() if u.login == who), None)
        if found is None or found.id == 0:
            raise KeyError(f"Tryton sandbox twin: no user {who!r}; add_user() it first")
        return found

    def login(self, login: str, password: str) -> tuple[int, str] | None | str:
        """common.db.login: (user id, session token); None for a wrong login or password; "rate-limited"
        once a login (known or not) has failed more than MAX_ATTEMPTS times in a row (res.user.login.attempt)."""
        with self.lock:
            if self._failed_logins.get(login, 0) > MAX_ATTEMPTS:
                return "rate-limited"
            user = next((u for u in self._users.values() if u.login == login and u.id != 0), None)
            if user is None or not secrets.compare_digest(user.password.encode(), password.encode()):
                self._failed_logins[login] = self._failed_logins.get(login, 0) + 1
                return None
            self._failed_logins.pop(login, None)
            token = secrets.token_hex(32)
            self._sessions[token] = user.id
            return user.id, token

    def session_user(self, user_id: Any, token: str) -> TwinUser | None:
        with self.lock:
            found = self._sessions.get(token)
            return self._users[found] if found is not None and found == user_id else None

    def logout(self, token: str) -> None:
        with self.lock:
            self._sessions.pop(token, None)

    def expire_sessions(self) -> None:
        """Forget every session, as the real one does once they time out: the next call answers 401."""
        with self.lock:
            self._sessions.clear()

    # -- records, behind the hub's back ------------------------------------------------------------

    def create(self, model: str, user: str | int, **values: Any) -> int:
        """Create a record as `user` would in the Tryton client, with the real checks (required fields, known
        choices, linked records that exist) but free to set what the client fills itself (`state`,
        `number`, a product's `code` and `name`, a sale's `total_amount`); its id."""
        actor = self.user(user).actor
        return self._run(lambda stamp: self.store.create(model, [values], actor, stamp, {"company": 1},
                                                         trusted=True)[0])

    def edit(self, model: str, record_id: int, user: str | int, *, stamp: dt.datetime | None = None,
             **values: Any) -> None:
        """Write `values` as `user`. stamp: the write_date to give it (default: the clock's next stamp); an
        older one emulates a transaction that started then and commits now."""
        actor = self.user(user).actor
        self._run(lambda now: self.store.write(model, [record_id], values, actor, now, {}, trusted=True),
                  stamp)

    def button(self, model: str, record_id: int, name: str, user: str | int, *,
               stamp: dt.datetime | None = None) -> None:
        """Click a workflow button as `user`, refused as the real one refuses it."""
        actor = self.user(user).actor
        self._run(lambda now: self.store.button(model, [record_id], name, actor, now, now.date(), {}), stamp)

    @contextmanager
    def transaction(self, user: str | int) -> Iterator[TwinTransaction]:
        """Writes that take their stamp now and become visible when the block ends (see TwinTransaction)."""
        tx = TwinTransaction(self, self.user(user), self.clock.stamp())
        yield tx
        with self.lock, self._atomic():
            for op in tx.ops:
                op()

    def records(self, model: str) -> list[dict[str, Any]]:
        """Every record of `model` (copies, in id order, with what the twin computes: rec_name, x2many ids, a
        sale's total, …), for tests to inspect."""
        with self.lock:
            return [self.store.snapshot(model, row) for _, row in sorted(self.store.tables[model].items())]

    def record(self, model: str, record_id: int) -> dict[str, Any]:
        with self.lock:
            return self.store.snapshot(model, self.store.tables[model][record_id])

    # -- faults and time ---------------------------------------------------------------------------

    def fail_next(self, n: int, status: int | None = 500, *, error: tuple[Any, Any] | list[Any] | None = None,
                  delay_seconds: float | None = None, method: str | None = None) -> None:
        """Make the next `n` calls (whose JSON-RPC method starts with `method`, when given) wait
        `delay_seconds`, then answer: `error` as a 200 JSON-RPC error body (e.g. ("UserError", ["…", "",
        None])), else werkzeug's page for `status`. With status=None and no error they are handled normally
        after the delay, so a client that timed out leaves behind a write it never saw confirmed."""
        with self.lock:
            self._faults.append(Fault(n, None if error is not None else status,
                                      list(error) if error is not None else None, delay_seconds, method))

    def take_fault(self, method: str) -> Fault | None:
        with self.lock:
            self._faults = [f for f in self._faults if f.remaining > 0]
            for fault in self._faults:
                if fault.method is None or method.startswith(fault.method):
                    fault.remaining -= 1
                    return fault
            return None

    def advance(self, seconds: float) -> dt.datetime:
        """Move the twin's clock on: every later create_date and write_date follows it."""
        return self.clock.advance(seconds)

    # -- HTTP --------------------------------------------------------------------------------------

    def http_client(self, login: str | None = None, password: str | None = None) -> httpx.Client:
        """An httpx.Client calling `app` in process (Starlette's TestClient: httpx's ASGITransport is
        async-only), at http://tryton.sandbox; logged in as `login` when given."""
        from starlette.testclient import TestClient

        client = TestClient(self.app, base_url="http://tryton.sandbox")
        if login is not None:
            client.headers["Authorization"] = self.session_header(login, password or "")
        return client

    def session_header(self, login: str, password: str) -> str:
        """The `Authorization` value of a new session for `login` (KeyError if the password is wrong)."""
        import base64

        answer = self.login(login, password)
        if not isinstance(answer, tuple):
            raise KeyError(f"Tryton sandbox twin: cannot log in as {login!r}")
        return "Session " + base64.b64encode(f"{login}:{answer[0]}:{answer[1]}".encode()).decode()

    def run_call(self, run: Callable[[dt.datetime], Any], writes: bool) -> Any:
        """One RPC call as one transaction, given its stamp (used by sandbox_http). A call that only reads
        takes no stamp, so it does not move the clock, and has nothing to undo."""
        if writes:
            return self._run(run)
        with self.lock:
            return run(self.clock.now())

    # -- internals -----------------------------------------------------------------------------------

    def _run(self, run: Callable[[dt.datetime], Any], stamp: dt.datetime | None = None) -> Any:
        with self.lock, self._atomic():
            return run(stamp or self.clock.stamp())

    @contextmanager
    def _atomic(self) -> Iterator[None]:
        """Undo every change when the block raises: a refused call leaves nothing behind."""
        tables = {name: {i: dict(row) for i, row in rows.items()} for name, rows in self.store.tables.items()}
        sequences = dict(self.store.sequences)
        try:
            yield
        except BaseException:
            self.store.tables, self.store.sequences = tables, sequences
            raise

