"""The Tryton sandbox twin answers as a real Tryton 8.2 does (each expected body below was first seen on one)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from connectors.tryton.twin import TrytonClock, TrytonError, TrytonTwin
from connectors.tryton.twin.wire import dumps, loads, timestamp_text
from tests.e2e.harness import wait_until
from tests.serving import served

START = datetime(2026, 11, 30, 5, 36, 47, 148919)
CTX = {"company": 1}
STALE = ["ConcurrencyException", "Records were modified in the meanwhile"]


class Rpc:
    """One logged-in JSON-RPC client of the twin: `call` returns the raw response, `result` the decoded result."""

    def __init__(self, twin: TrytonTwin, login: str | None = "admin", password: str = "admin"):
        self.twin, self.http, self.n = twin, twin.http_client(), 0
        self.auth = twin.session_header(login, password) if login else None

    def call(self, method: str, *params: Any, auth: str | None = None, db: str | None = None,
             extra: dict[str, Any] | None = None) -> httpx.Response:
        self.n += 1
        headers = {"Content-Type": "application/json"}
        if auth or self.auth:
            headers["Authorization"] = auth or str(self.auth)
        body = {"id": self.n, "method": method, "params": list(params), **(extra or {})}
        return self.http.post(f"/{db or self.twin.database}/rpc/", content=dumps(body), headers=headers)

    def body(self, method: str, *params: Any) -> Any:
        answer = self.call(method, *params)
        assert answer.status_code == 200, answer.text
        return loads(answer.content)

    def result(self, method: str, *params: Any) -> Any:
        body = self.body(method, *params)
        assert "error" not in body, body["error"]
        return body["result"]

    def error(self, method: str, *params: Any) -> Any:
        body = self.body(method, *params)
        assert "error" in body, body
        return body["error"]


@pytest.fixture
def twin() -> TrytonTwin:
    return TrytonTwin(clock=TrytonClock(START))


@pytest.fixture
def rpc(twin: TrytonTwin) -> Iterator[Rpc]:
    client = Rpc(twin)
    yield client
    client.http.close()


@pytest.fixture
def product(twin: TrytonTwin) -> int:
    return twin.create("product.product", "admin", code="W-1", name="Widget")


def _user_error(message: str, description: str = "") -> list[Any]:
    return ["UserError", [message, description, None]]


def _productions(rpc: Rpc, product: int) -> list[int]:
    """References TH-1, B, None, A, C with quantities 3, 1, 2, 5, 2, ids 1-5 (the real probe's data)."""
    rows = [{"product": product, "quantity": 3, "reference": "TH-1"}, {"product": product, "quantity": 1,
            "reference": "B"}, {"product": product, "quantity": 2}, {"product": product, "quantity": 5,
            "reference": "A"}, {"quantity": 2, "reference": "C"}]
    return list(rpc.result("model.production.create", rows, CTX))


# ---- login and sessions ---------------------------------------------------------------------------

def test_login_answers_user_id_session_and_no_bus_url(twin: TrytonTwin) -> None:
    """common.db.login gives [user id, 64-hex session, None]; that session authorises model calls."""
    twin.add_user("mes", "mes-password-1")
    http = twin.http_client()
    answer = http.post("/tickethub/rpc/", json={"id": 1, "method": "common.db.login",
                                                "params": ["mes", {"password": "mes-password-1"}, "en"]})
    uid, session, bus = answer.json()["result"]
    assert (answer.status_code, uid, len(session), bus) == (200, 2, 64, None)
    header = "Session " + base64.b64encode(f"mes:{uid}:{session}".encode()).decode()
    read = http.post("/tickethub/rpc/", json={"id": 2, "method": "model.res.user.read",
                                              "params": [[uid], ["login", "rec_name"], {}]},
                     headers={"Authorization": header})
    assert read.json() == {"id": 2, "result": [{"id": 2, "login": "mes", "rec_name": "mes"}]}


def test_a_wrong_password_is_werkzeugs_401_page_and_after_six_in_a_row_the_login_is_429(twin: TrytonTwin) -> None:
    """Wrong credentials are HTTP 401 with werkzeug's HTML, as real; after five failures the login is throttled."""
    rpc = Rpc(twin, login=None)
    for _ in range(6):
        answer = rpc.call("common.db.login", "admin", {"password": "wrong"}, "en")
        assert answer.status_code == 401
        assert answer.headers["content-type"] == "text/html; charset=utf-8"
        assert "<title>401 Unauthorized</title>" in answer.text and "doesn&#39;t understand" in answer.text
    assert rpc.call("common.db.login", "admin", {"password": "admin"}, "en").status_code == 429
    assert rpc.call("common.db.login", "nobody", {"password": "x"}, "en").status_code == 401


def test_failures_are_counted_per_login_even_for_a_login_nobody_has(twin: TrytonTwin) -> None:
    """A login nobody has is throttled like any other, and the throttle is per login name."""
    rpc = Rpc(twin, login=None)
    statuses = [rpc.call("common.db.login", "nobody", {"password": "x"}, "en").status_code for _ in range(7)]
    assert statuses == [401] * 6 + [429]
    assert rpc.call("common.db.login", "admin", {"password": "admin"}, "en").status_code == 200


def test_a_login_without_password_asks_for_it_in_the_body(twin: TrytonTwin) -> None:
    """No password parameter is a LoginException naming what to ask for, not a 401."""
    rpc = Rpc(twin, login=None)
    assert rpc.error("common.db.login", "admin", {}, "en") == ["LoginException",
                                                               ["password", "Password for admin", "password"]]


@pytest.mark.parametrize("header", [None, "Session eDoxOmRlYWQ=", "Bearer abc", "Session !!!"])
def test_a_missing_or_bad_session_is_401_with_an_empty_body_and_a_basic_challenge(
        twin: TrytonTwin, header: str | None) -> None:
    """No header, a forged session or another scheme: 401, empty body, a Basic challenge."""
    http = twin.http_client()
    answer = http.post("/tickethub/rpc/", json={"id": 1, "method": "model.production.search",
                                                "params": [[], 0, None, None, {}]},
                       headers={"Authorization": header} if header else {})
    assert (answer.status_code, answer.text) == (401, "")
    assert answer.headers["www-authenticate"] == 'Basic realm="Tryton"'


def test_basic_authentication_logs_in_on_each_call(twin: TrytonTwin) -> None:
    """Basic credentials are checked on every call; wrong ones are the same 401 as a bad session."""
    http = twin.http_client()
    body = {"id": 1, "method": "model.res.user.read", "params": [[1], ["login"], {}]}
    for credentials, status in (("admin:admin", 200), ("admin:wrong", 401)):
        header = "Basic " + base64.b64encode(credentials.encode()).decode()
        answer = http.post("/tickethub/rpc/", json=body, headers={"Authorization": header})
        assert answer.status_code == status
    assert answer.headers["www-authenticate"] == 'Basic realm="Tryton"'


def test_logout_and_expired_sessions_answer_401(twin: TrytonTwin, rpc: Rpc) -> None:
    """A session ends with common.db.logout or when the twin expires every session."""
    other = Rpc(twin)
    assert rpc.result("common.db.logout") is None
    assert rpc.call("model.production.search", [], 0, None, None, {}).status_code == 401
    twin.expire_sessions()
    assert other.call("model.production.search", [], 0, None, None, {}).status_code == 401


def test_root_rpc_answers_the_series_and_the_database_list(twin: TrytonTwin) -> None:
    """/rpc/ answers the server series and the database list; a GET on a JSON-RPC path is 405."""
    http = twin.http_client()
    version = http.post("/rpc/", json={"id": 1, "method": "common.server.version", "params": []})
    databases = http.post("/rpc/", json={"id": 2, "method": "common.db.list", "params": []})
    assert version.json() == {"id": 1, "result": "8.2"} and databases.json() == {"id": 2, "result": ["tickethub"]}
    assert http.get("/tickethub/rpc/").status_code == 405


def test_an_unknown_database_is_503(twin: TrytonTwin, rpc: Rpc) -> None:
    """A database the server does not have is werkzeug's 503 page."""
    answer = rpc.call("common.db.login", "admin", {"password": "admin"}, "en", db="nodb")
    assert answer.status_code == 503 and "Database &#39;nodb.sqlite&#39; doesn&#39;t exist!" in answer.text


# ---- create and read ------------------------------------------------------------------------------

def test_create_answers_ids_and_a_new_record_has_no_write_date(twin: TrytonTwin, rpc: Rpc, product: int) -> None:
    """Never edited, a production has a create_date, a null write_date and a _timestamp from its create_date."""
    [pid] = rpc.result("model.production.create", [{"product": product, "quantity": 3, "reference": "TH-1"}], CTX)
    [row] = rpc.result("model.production.read", [pid], ["state", "number", "rec_name", "create_date", "write_date",
                                                        "write_uid", "create_uid", "_timestamp", "quantity"], {})
    assert row["create_date"] > START and row["write_date"] is None and row["write_uid"] is None
    assert row == {"id": pid, "state": "draft", "number": None, "rec_name": "[TH-1]", "create_uid": 1,
                   "quantity": 3.0, "create_date": row["create_date"], "write_date": None, "write_uid": None,
                   "_timestamp": timestamp_text(row["create_date"])}


def test_a_timestamp_reads_as_sqlite_prints_the_epoch() -> None:
    """15 significant digits, as the real one's `_timestamp` ("1796017050.1541" for .154101)."""
    assert timestamp_text(datetime(2026, 11, 30, 5, 37, 30, 154101)) == "1796017050.1541"
    assert timestamp_text(datetime(2026, 11, 30, 5, 36, 47, 148919)) == "1796017007.14892"
    assert timestamp_text(datetime(2026, 11, 30, 5, 36, 47)) == "1796017007.0"


def test_dotted_fields_read_back_as_nested_records_and_rows_come_in_id_order(
        twin: TrytonTwin, rpc: Rpc, product: int) -> None:
    """`product.code` reads back under `"product."` (null when unlinked), rows in id order, booleans as 0/1."""
    ids = _productions(rpc, product)
    rows = rpc.result("model.production.read", [ids[4], ids[0]], ["product.code", "product.rec_name",
                                                                   "create_uid.rec_name"], {})
    assert rows == [{"id": 1, "product.": {"id": 1, "code": "W-1", "rec_name": "[W-1] Widget"},
                     "create_uid.": {"id": 1, "rec_name": "admin"}},
                    {"id": 5, "product.": None, "create_uid.": {"id": 1, "rec_name": "admin"}}]
    assert rpc.result("model.res.user.read", [0], ["login", "active", "rec_name"], {}) == [
        {"id": 0, "login": "root", "active": 0, "rec_name": "Root"}]  # booleans read back 0/1 on SQLite


@pytest.mark.parametrize(("method", "params", "error"), [
    ("model.no.such.read", [[1], ["id"], {}], ["'no.such'", ""]),
    ("model.production.read", [[1], ["nosuch"], {}], ["'nosuch'", ""]),
    ("model.production.read", [[1], ["reference.x"], {}], ["'Char' object has no attribute 'get_target'", ""]),
    ("model.production.read", [[99], ["state"], {}],
     _user_error('You are trying to read records "99" of "Production" that don\'t exist.')),
    ("model.production.write", [[99], {"reference": "x"}, {}],
     _user_error('You are trying to write to records "99" of "Production" that don\'t exist.')),
    ("model.production.write", [[1], {"reference": "x"}],
     ["ModelSQL.write() missing 1 required positional argument: 'values'", ""]),
    ("model.production.write", [[1], {"quantity": "abc"}, {}], ["could not convert string to float: 'abc'", ""]),
    ("model.production.write", [[1], {"state": "done"}, {}],
     _user_error('You are not allowed to modify the field "State" of "Production".')),
    ("model.production.create", [[{"nosuch": 1}], CTX], ["'nosuch'", ""]),
    ("model.production.create", [[{"quantity": 1}], {}], _user_error(
        'You are not allowed to create records of "Production" because they fail on at least one of these '
        'rules:\nUser in companies', "Within groups: ")),
    ("model.sale.sale.create", [[{"reference": "x"}], CTX],
     _user_error('A value is required for field "Party" in record "[x]" of "Sale".')),
    ("model.product.product.create", [[{"name": "X"}], {}],
     ['Missing setter function for field "Name" in "Product".', ""]),
    ("model.production.search_read", [[["reference", "bogus", "A"]], 0, None, None, ["id"], {}],
     ["maximum recursion depth exceeded in __instancecheck__", ""]),
    ("model.production.search_read", [[], 0, None, [["reference", "SIDEWAYS"]], ["id"], {}], ["'SIDEWAYS'", ""]),
    ("model.party.party.search_read", [[["phone", "=", "1"]], 0, None, None, ["id"], {}],
     ['Missing search function for field "Phone" in "Party".', ""]),
])
def test_refusals_are_the_real_error_bodies(rpc: Rpc, product: int, method: str, params: list[Any],
                                             error: list[Any]) -> None:
    """Each refusal is the body the real server gives for the same call."""
    rpc.result("model.production.create", [{"product": product, "quantity": 1}], CTX)
    assert rpc.error(method, *params) == error


@pytest.mark.parametrize(("method", "params", "status", "text"), [
    ("model.production.assign", [[1], CTX], 403, "<title>403 Forbidden</title>"),
    ("model.production.nosuch", [[1], CTX], 403, "<title>403 Forbidden</title>"),
    ("model.production.read", [[1], ["state"]], 422, "<p>Missing context argument</p>"),
    ("model.production.write", [[1, 1], {"reference": "x"}, {}], 422, "<p>Duplicate records</p>"),
    ("model.production.delete", [[1], {}], 501, "Not emulated by the Tryton sandbox twin"),
])
def test_http_level_refusals_have_the_real_status(rpc: Rpc, product: int, method: str, params: list[Any],
                                                  status: int, text: str) -> None:
    """An unexposed method, a missing context or duplicate ids are HTTP errors; a left-out method is 501."""
    rpc.result("model.production.create", [{"product": product, "quantity": 1}], CTX)
    answer = rpc.call(method, *params)
    assert answer.status_code == status and text in answer.text


@pytest.mark.parametrize(("method", "params"), [
    ("model.production.create", [[1], CTX]), ("model.production.create", [[["reference", "=", 1]], CTX]),
    ("model.production.search", [[1], {}]), ("model.production.search", [[], "x", {}]),
    ("model.production.search_read", [[["product.nosuch", "=", 1]], 0, None, None, ["id"], {}]),
])
def test_malformed_arguments_are_a_python_error_in_the_body_not_a_500(rpc: Rpc, method: str,
                                                                      params: list[Any]) -> None:
    """Refused before any record is looked at, as trytond refuses while building its SQL (here: none exist)."""
    error = rpc.error(method, *params)
    assert isinstance(error[0], str) and error[1] == ""


def test_a_request_with_other_keys_than_id_method_params_gets_the_bare_result(rpc: Rpc) -> None:
    """Not strictly JSON-RPC (an extra key): the result comes back bare, as real."""
    answer = rpc.call("model.res.user.search", [], 0, None, None, {}, extra={"jsonrpc": "2.0"})
    assert answer.json() == [1]


# ---- search, domains and order ---------------------------------------------------------------------

@pytest.mark.parametrize(("domain", "expected"), [
    ([["reference", "=", None]], [3]),
    ([["reference", "!=", None]], [1, 2, 4, 5]),
    ([["reference", "!=", "A"]], [1, 2, 3, 5]),  # Char: NULL compares as '' (trytond's COALESCE)
    ([["reference", "in", ["A", None]]], [3, 4]),
    ([["reference", "not in", ["A"]]], [1, 2, 3, 5]),
    ([["reference", "not in", ["A", None]]], [1, 2, 5]),
    ([["reference", ">=", "B"]], [1, 2, 5]),
    ([["reference", "<", None]], []),
    ([["reference", "in", []]], []),
    ([["reference", "not in", []]], [1, 2, 3, 4, 5]),
    ([["reference", "like", "t%"]], [1]),  # SQLite's LIKE ignores ASCII case
    ([["reference", "not like", "T%"]], [2, 3, 4, 5]),
    (["OR", ["reference", "=", "A"], [["quantity", "=", 2], ["reference", "=", None]]], [3, 4]),
    ([["quantity", ">", 1.5]], [1, 3, 4, 5]),
    ([["product", "=", None]], [5]),
    ([["product.code", "=", "W-1"]], [1, 2, 3, 4]),
    ([["product.code", "!=", "W-1"]], [5]),  # a negative leaf through a Many2One takes the unlinked ones
    ([["rec_name", "ilike", "%b%"]], [2]),
    ([["write_date", ">=", datetime(2020, 1, 1)]], []),  # NULL never matches a comparison
    ([["create_date", ">=", datetime(2020, 1, 1)]], [1, 2, 3, 4, 5]),
])
def test_domains_match_what_the_real_sql_matches(rpc: Rpc, product: int, domain: list[Any],
                                                 expected: list[int]) -> None:
    """Each domain selects the records the real server selected from the same five productions."""
    _productions(rpc, product)
    assert rpc.result("model.production.search", domain, 0, None, None, {}) == expected


@pytest.mark.parametrize(("order", "expected"), [
    ([["reference", "ASC"]], [3, 4, 2, 5, 1]),  # NULLs first ascending (SQLite)
    ([["reference", "DESC"]], [1, 5, 2, 4, 3]),  # and last descending
    ([["reference", "ASC NULLS LAST"]], [4, 2, 5, 1, 3]),
    ([["quantity", "ASC"], ["reference", "DESC"]], [2, 5, 3, 1, 4]),
    ([["quantity", "ASC"]], [2, 3, 5, 1, 4]),  # ties in id order
    (None, [1, 2, 3, 4, 5]),  # production's own order: effective_date ASC NULLS LAST, id
])
def test_orders_place_nulls_as_sqlite_does(rpc: Rpc, product: int, order: Any, expected: list[int]) -> None:
    """Orders put NULLs where SQLite does and break ties by id."""
    _productions(rpc, product)
    assert rpc.result("model.production.search", [], 0, None, order, {}) == expected


def test_search_read_pages_in_order_and_reads_only_id_without_fields(rpc: Rpc, product: int) -> None:
    """offset/limit page the ordered result; no fields means only ids; search_count counts."""
    _productions(rpc, product)
    assert rpc.result("model.production.search_read", [], 1, 2, [["quantity", "ASC"]], ["reference"], {}) == [
        {"id": 3, "reference": None}, {"id": 5, "reference": "C"}]
    assert rpc.result("model.production.search_read", [["reference", "=", "A"]], 0, None, None, None, {}) == [
        {"id": 4}]
    assert rpc.result("model.production.search_count", [["reference", "!=", None]], {}) == 4


def test_inactive_records_are_searched_only_without_active_test(rpc: Rpc) -> None:
    """Inactive records (root) are left out of searches unless active_test is false."""
    assert rpc.result("model.res.user.search", [], 0, None, None, {}) == [1]
    assert rpc.result("model.res.user.search", [], 0, None, [["id", "ASC"]], {"active_test": False}) == [0, 1]


def test_a_poll_on_write_date_or_create_date_returns_edited_and_never_edited_records(
        twin: TrytonTwin, rpc: Rpc, product: int) -> None:
    """The connector's poll: edited records by write_date, never-edited ones (null write_date) by create_date."""
    first = twin.create("production", "admin", product=product, quantity=1.0)
    twin.advance(60)
    since = twin.clock.now()
    second = twin.create("production", "admin", product=product, quantity=1.0)
    twin.edit("production", first, "admin", reference="edited")
    domain = ["OR", [["write_date", ">=", since]], [["write_date", "=", None], ["create_date", ">=", since]]]
    rows = rpc.result("model.production.search_read", domain, 0, None, [["write_date", "ASC"], ["id", "ASC"]],
                      ["write_date", "create_date"], {})
    assert [r["id"] for r in rows] == [second, first]


def test_last_modified_at_is_write_date_else_create_date_and_searchable(twin: TrytonTwin, rpc: Rpc,
                                                                         product: int) -> None:
    """Every model's `last_modified_at` (coalesce of the two, in SQL on the real one) polls in one leaf."""
    first = twin.create("production", "admin", product=product, quantity=1.0)
    twin.advance(60)
    since = twin.clock.now()
    second = twin.create("production", "admin", product=product, quantity=1.0)
    twin.edit("production", first, "admin", reference="edited")
    rows = rpc.result("model.production.search_read", [["last_modified_at", ">=", since]], 0, None,
                      [["last_modified_at", "ASC"], ["id", "ASC"]], ["last_modified_at", "write_date", "create_date"],
                      {})
    assert [r["id"] for r in rows] == [second, first]
    assert rows[0]["last_modified_at"] == rows[0]["create_date"] and rows[1]["last_modified_at"] == rows[1][
        "write_date"]


# ---- write and _timestamp -----------------------------------------------------------------------------

def test_a_write_stamps_write_date_from_the_twin_clock_and_the_writer(twin: TrytonTwin, product: int) -> None:
    """A write's write_date is the twin clock's stamp and its write_uid the session's user."""
    twin.add_user("mes", "mes-password-1")
    rpc = Rpc(twin, "mes", "mes-password-1")
    [pid] = rpc.result("model.production.create", [{"product": product, "quantity": 1}], CTX)
    twin.clock.set(datetime(2027, 1, 2, 3, 4, 5))
    assert rpc.result("model.production.write", [pid], {"reference": "TH-9"}, {}) is None
    [row] = rpc.result("model.production.read", [pid], ["write_date", "write_uid.login", "reference"], {})
    assert row["write_date"] == datetime(2027, 1, 2, 3, 4, 5, 1000)  # each transaction ticks 1 ms
    assert row["write_uid."] == {"id": 2, "login": "mes"} and row["reference"] == "TH-9"


def test_a_stale_timestamp_is_refused_and_changes_nothing(twin: TrytonTwin, rpc: Rpc, product: int) -> None:
    """The _timestamp just read lets one write through; the same one again is a ConcurrencyException."""
    [pid] = rpc.result("model.production.create", [{"product": product, "quantity": 1}], CTX)
    [row] = rpc.result("model.production.read", [pid], ["_timestamp"], {})
    key = {"_timestamp": {f"production,{pid}": row["_timestamp"]}}
    assert rpc.result("model.production.write", [pid], {"reference": "first"}, key) is None
    assert rpc.error("model.production.write", [pid], {"reference": "second"}, key) == STALE
    assert rpc.error("model.production.wait", [pid], {**CTX, **key}) == STALE
    assert twin.record("production", pid)["reference"] == "first"
    other = {"_timestamp": {f"production,{pid}": None, "production,999": "1"}}  # ignored, as real
    assert rpc.result("model.production.write", [pid], {"reference": "third"}, other) is None


def test_values_round_trip_in_trytons_json_classes(twin: TrytonTwin, rpc: Rpc, product: int) -> None:
    """A date sent as Tryton's JSON class reads back as the same class."""
    [pid] = rpc.result("model.production.create", [{"product": product, "quantity": 1,
                                                    "planned_date": date(2026, 12, 24)}], CTX)
    answer = rpc.call("model.production.read", [pid], ["planned_date"], {})
    assert json.loads(answer.text)["result"][0]["planned_date"] == {"__class__": "date", "year": 2026, "month": 12,
                                                                    "day": 24}


# ---- workflow buttons ---------------------------------------------------------------------------------

def test_production_buttons_follow_the_real_transitions(twin: TrytonTwin, rpc: Rpc, product: int) -> None:
    """draft → wait (numbered) → assign_try → run → do; a finished order can still be cancelled by admin."""
    [pid] = rpc.result("model.production.create", [{"product": product, "quantity": 1, "reference": "TH-1"}], CTX)
    seen = []
    for button in ("wait", "wait", "assign_try", "assign_force", "run", "do", "cancel", "draft"):
        assert rpc.result(f"model.production.{button}", [pid], CTX) is None
        seen.append(twin.record("production", pid)["state"])
    assert seen == ["waiting", "waiting", "assigned", "assigned", "running", "done", "cancelled", "draft"]
    row = twin.record("production", pid)
    assert row["number"] == "1" and row["effective_date"] == row["write_date"].date()


def test_a_button_the_state_does_not_allow_is_refused_in_the_body(twin: TrytonTwin, rpc: Rpc, product: int) -> None:
    """A button the state hides is a UserError, over RPC and from the helper, and writes nothing."""
    [pid] = rpc.result("model.production.create", [{"product": product, "quantity": 1, "reference": "TH-1"}], CTX)
    assert rpc.error("model.production.run", [pid], CTX) == _user_error(
        'You can not call "run" on "[TH-1]" of "Production".')
    assert twin.record("production", pid)["write_date"] is None
    with pytest.raises(TrytonError) as refused:
        twin.button("production", pid, "do", "admin")
    assert refused.value.error == _user_error('You can not call "do" on "[TH-1]" of "Production".')


def test_only_an_administrator_may_cancel_a_done_production(twin: TrytonTwin, product: int) -> None:
    """Cancelling a done production is refused to a user without the cancellation right."""
    twin.add_user("planner", "planner-password-1")
    pid = twin.create("production", "admin", product=product, quantity=1.0, reference="P")
    for button in ("wait", "assign_try", "run", "do"):
        twin.button("production", pid, button, "planner")
    with pytest.raises(TrytonError):
        twin.button("production", pid, "cancel", "planner")
    twin.button("production", pid, "cancel", "admin")
    assert twin.record("production", pid)["state"] == "cancelled"


def test_a_shipment_is_picked_packed_shipped_and_done(twin: TrytonTwin, rpc: Rpc) -> None:
    """A customer shipment needs its address and goes draft → waiting → assigned → picked → packed → shipped → done."""
    party = twin.create("party.party", "admin", name="ACME")
    address = twin.create("party.address", "admin", party=party, street="1 Main St", city="Town")
    assert rpc.error("model.stock.shipment.out.create", [{"customer": party}], CTX) == _user_error(
        'A value is required for field "Delivery Address" in record "(1)" of "Stock Shipment Out".')
    [sid] = rpc.result("model.stock.shipment.out.create", [{
        "customer": party, "delivery_address": address, "reference": "TH-S1", "warehouse_output": 2,
        "warehouse_storage": 3}], CTX)
    assert rpc.error("model.stock.shipment.out.pick", [sid], CTX)[0] == "UserError"
    states = []
    for button in ("wait", "assign_try", "pick", "pack", "ship", "do"):
        rpc.result(f"model.stock.shipment.out.{button}", [sid], CTX)
        states.append(twin.record("stock.shipment.out", sid)["state"])
    assert states == ["waiting", "assigned", "picked", "packed", "shipped", "done"]
    [row] = rpc.result("model.stock.shipment.out.read", [sid], ["rec_name", "customer.rec_name",
                                                                 "delivery_address.rec_name"], {})
    assert row == {"id": sid, "rec_name": "1 [TH-S1]", "customer.": {"id": party, "rec_name": "ACME"},
                   "delivery_address.": {"id": address, "rec_name": "ACME, 1 Main St, Town"}}


def test_a_sale_is_quoted_with_lines_and_an_address_and_confirming_ships_it(
        twin: TrytonTwin, rpc: Rpc, product: int) -> None:
    """A sale quotes once it has lines and both addresses; confirming makes it processing with a waiting shipment."""
    [party] = rpc.result("model.party.party.create", [{"name": "ACME", "addresses": [["create", [{}]]]}], {})
    [sale] = rpc.result("model.sale.sale.create", [{"party": party, "reference": "TH-42",
                                                    "description": "Broken pump"}], CTX)
    assert rpc.error("model.sale.sale.quote", [sale], CTX) == _user_error(
        'You can not call "quote" on "[TH-42]" of "Sale".')  # no lines yet
    rpc.result("model.sale.sale.write", [sale], {"lines": [["create", [{
        "product": product, "quantity": 2, "unit": 1, "unit_price": Decimal("10")}]]]}, CTX)
    assert rpc.error("model.sale.sale.quote", [sale], CTX) == _user_error(
        'To get a quote for sale "[TH-42]" you must enter an invoice address.')
    [address] = rpc.result("model.party.party.read", [party], ["addresses"], {})[0]["addresses"]
    rpc.result("model.sale.sale.write", [sale], {"invoice_address": address}, CTX)
    assert rpc.error("model.sale.sale.quote", [sale], CTX) == _user_error(
        'To get a quote for sale "[TH-42]" you must enter a shipment address.')
    rpc.result("model.sale.sale.write", [sale], {"shipment_address": address}, CTX)
    rpc.result("model.sale.sale.quote", [sale], CTX)
    assert rpc.error("model.sale.sale.write", [sale], {"description": "late"}, {}) == _user_error(
        'You are not allowed to modify the field "Description" in record "1 [TH-42]" of "Sale".')
    rpc.result("model.sale.sale.confirm", [sale], CTX)
    [row] = rpc.result("model.sale.sale.read", [sale], ["state", "total_amount", "shipments", "shipment_state"], {})
    assert row == {"id": sale, "state": "processing", "total_amount": Decimal("20.00"), "shipments": [1],
                   "shipment_state": "waiting"}
    assert rpc.result("model.sale.sale.search", [["shipments", "in", [1]]], 0, None, None, {}) == [sale]
    shipment = twin.record("stock.shipment.out", 1)
    assert (shipment["state"], shipment["create_date"]) == ("waiting", shipment["write_date"])


def test_a_partys_phone_and_email_are_its_first_contact_mechanisms_set_only_at_create(rpc: Rpc) -> None:
    """Phone and email create contact mechanisms at create, read back the first of each type, and refuse a write."""
    [party] = rpc.result("model.party.party.create", [{"name": "ACME", "phone": "+3212345678",
                                                       "email": "a@acme.test"}], {})
    rpc.result("model.party.party.write", [party], {"contact_mechanisms": [["create", [
        {"type": "email", "value": "second@acme.test"}]]]}, {})
    [row] = rpc.result("model.party.party.read", [party], ["phone", "email", "contact_mechanisms.rec_name",
                                                           "write_date", "create_date"], {})
    assert (row["phone"], row["email"]) == ("+3212345678", "a@acme.test")
    assert [m["rec_name"] for m in row["contact_mechanisms."]] == [  # the setters ran in field-name order
        "ACME <a@acme.test>", "ACME <+3212345678>", "ACME <second@acme.test>"]
    assert rpc.error("model.party.party.write", [party], {"phone": "+1"}, {}) == _user_error(
        'You are not allowed to modify the field "Phone" in record "ACME" of "Party".')


def test_a_sale_line_needs_a_unit_and_is_named_by_quantity_product_and_sale(rpc: Rpc, product: int) -> None:
    """A sale line without a unit is refused, named as the real one names it."""
    [party] = rpc.result("model.party.party.create", [{"name": "ACME"}], {})
    line = {"product": product, "quantity": 2, "unit_price": Decimal("10")}
    assert rpc.error("model.sale.sale.create", [{"party": party, "lines": [["create", [line]]]}], CTX) == \
        _user_error('A value is required for field "Unit" in record "2.0 [W-1] Widget @ (1)" of "Sale Line".')
    [sale] = rpc.result("model.sale.sale.create", [{"party": party, "reference": "Q2", "lines": [
        ["create", [{**line, "unit": 1}]]]}], CTX)
    assert rpc.result("model.sale.sale.read", [sale], ["lines.rec_name"], {})[0]["lines."] == [
        {"id": 1, "rec_name": "2\u00a0u [W-1] Widget @ [Q2]"}]


def test_a_char_given_a_number_fails_as_trytond_stripping_it(rpc: Rpc, product: int) -> None:
    """A number written into a Char field fails with Python's own error text, as real."""
    [pid] = rpc.result("model.production.create", [{"product": product, "quantity": 1}], CTX)
    assert rpc.error("model.production.write", [pid], {"reference": 5}, {}) == [
        "'int' object has no attribute 'strip'", ""]


def test_a_user_in_no_group_may_read_but_not_write(twin: TrytonTwin, product: int) -> None:
    """A user in no group reads but every write is refused as an access error."""
    twin.add_user("clerk", "clerk-password-1", "Clerk", can_write=False)
    pid = twin.create("production", "admin", product=product, quantity=1.0)
    clerk = Rpc(twin, "clerk", "clerk-password-1")
    assert clerk.result("model.production.read", [pid], ["quantity"], {}) == [{"id": pid, "quantity": 1.0}]
    assert clerk.error("model.production.write", [pid], {"reference": "x"}, {}) == _user_error(
        'You are not allowed to access "Production".', "Within groups: ")


# ---- behind the hub's back: helpers, clock, transactions, faults ----------------------------------------

def test_a_refused_call_leaves_nothing_behind(twin: TrytonTwin, rpc: Rpc, product: int) -> None:
    """Creating two records where the second is refused creates neither."""
    error = rpc.error("model.production.create", [{"product": product, "quantity": 1}, {"warehouse": None}], CTX)
    assert error == _user_error('A value is required for field "Warehouse" in record "(2)" of "Production".')
    assert twin.records("production") == []


def test_an_edit_stamped_earlier_appears_behind_rows_already_seen(twin: TrytonTwin, product: int) -> None:
    """A transaction that started before a poll and commits after it gives a write_date the poll already passed."""
    first = twin.create("production", "admin", product=product, quantity=1.0)
    late = twin.create("production", "admin", product=product, quantity=1.0)
    started = twin.clock.now()
    twin.advance(10)
    twin.edit("production", first, "admin", reference="seen")
    watermark = twin.record("production", first)["write_date"]
    twin.edit("production", late, "admin", stamp=started, reference="late")
    assert twin.record("production", late)["write_date"] == started < watermark


def test_a_transaction_stamps_its_start_and_is_invisible_until_it_ends(twin: TrytonTwin, product: int) -> None:
    """A transaction's writes carry its start time and appear only when it ends, over later writes."""
    pid = twin.create("production", "admin", product=product, quantity=1.0)
    with twin.transaction("admin") as tx:
        began = tx.stamp
        tx.edit("production", pid, reference="slow")
        tx.create("production", product=product, quantity=2.0)
        twin.advance(30)
        twin.edit("production", pid, "admin", reference="fast")
        assert twin.record("production", pid)["reference"] == "fast" and len(twin.records("production")) == 1
    row = twin.record("production", pid)
    assert (row["reference"], row["write_date"]) == ("slow", began)
    assert twin.record("production", tx.ids[0])["create_date"] == began


def test_fail_next_answers_an_error_body_or_a_status_then_recovers(twin: TrytonTwin, rpc: Rpc) -> None:
    """Injected faults answer an error body or an HTTP status, one call each, then the twin answers normally."""
    twin.fail_next(1, error=STALE, method="model.production.write")
    twin.fail_next(1, status=503)
    assert rpc.error("model.production.write", [1], {}, {}) == STALE
    assert rpc.call("model.res.user.search", [], 0, None, None, {}).status_code == 503
    assert rpc.result("model.res.user.search", [], 0, None, None, {}) == [1]


def test_fail_next_can_delay_an_answer_past_a_client_timeout(twin: TrytonTwin, product: int) -> None:
    """Delayed with no status, the call still happens after the client gave up: a write it never saw confirmed."""
    pid = twin.create("production", "admin", product=product, quantity=1.0)
    twin.fail_next(1, status=None, delay_seconds=0.5, method="model.production.write")
    with served(twin.app) as url, httpx.Client(base_url=url, timeout=0.1) as http:
        body = {"id": 1, "method": "model.production.write", "params": [[pid], {"reference": "late"}, {}]}
        with pytest.raises(httpx.ReadTimeout):
            http.post("/tickethub/rpc/", json=body, headers={"Authorization": twin.session_header("admin", "admin")})
        wait_until(lambda: twin.record("production", pid)["reference"] == "late", 5, 0.02, "the write to land")


def test_the_clock_moves_only_when_told_and_by_a_tick_per_transaction(twin: TrytonTwin, product: int) -> None:
    """Stamps follow advance() and clock.set(), each transaction one millisecond on."""
    assert twin.clock.now() > START
    before = twin.clock.now()
    twin.advance(3600)
    pid = twin.create("production", "admin", product=product, quantity=1.0)
    assert twin.record("production", pid)["create_date"] == before + timedelta(hours=1, milliseconds=1)
    twin.clock.set(datetime(2030, 1, 1))
    twin.edit("production", pid, "admin", reference="x")
    assert twin.record("production", pid)["write_date"] == datetime(2030, 1, 1, 0, 0, 0, 1000)


def test_reads_take_no_stamp_so_the_clock_stays_put(twin: TrytonTwin, rpc: Rpc) -> None:
    """Reading does not move the clock."""
    before = twin.clock.now()
    rpc.result("model.res.user.search_read", [], 0, None, None, ["login"], {})
    rpc.result("model.res.user.read", [1], ["write_date"], {})
    assert twin.clock.now() == before


def test_two_twins_share_nothing() -> None:
    """Twins are independent: a user added to one is not in the other."""
    one, two = TrytonTwin(), TrytonTwin()
    one.add_user("mes", "mes-password-1")
    assert [u["login"] for u in one.records("res.user")] == ["root", "admin", "mes"]
    assert [u["login"] for u in two.records("res.user")] == ["root", "admin"]
