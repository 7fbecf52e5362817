"""The operator console over HTTP, in process (FastAPI's TestClient on an embedded SQLite hub, the systems being
in-memory twins): who may see and do what (login, roles, CSRF, cookies, single sign-on, redirects), the language,
hostile data shown as text, a run of 10,000 items in pages, and decisions taken through the console."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from fastapi.testclient import TestClient

from connectors.generic.twin import GenericTwin, transport
from hub.bootstrap import bootstrap
from hub.config import load_settings
from hub.core.ports import Connector
from hub.http.app import create_app
from hub.plugins import build_connector
from hub.store.engine import make_engine
from hub.usecases.context import Hub
from hub.usecases.reconcile import ReconcileRequest, run_reconcile
from tests.conftest import Clock
from tests.console_world import (
    ARABIC_ADDRESS,
    ESCAPED_IMG_TAG,
    ESCAPED_SCRIPT,
    HEBREW_NOTE,
    IMG_TAG,
    LONG_TEXT,
    OPERATOR,
    OPERATOR_PASSWORD,
    SCRIPT_NAME,
    VIEWER,
    VIEWER_PASSWORD,
    console_users,
    review_mappings,
)
from tests.twin_world import TwinWorld

TOKEN = "console-api-token-not-a-secret"
SECRET = "whsec_Y29uc29sZS10d2luLXNlY3JldC0zMi1ieXRlcy1sb25nIQ=="
WRONG_SECRET = "whsec_d3JvbmctdHdpbi1zZWNyZXQtMzItYnl0ZXMtbG9uZyEhIQ=="
EXPORT_TOKEN = "export-token"
T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
SYSTEMS = ("crm", "erp", "mes", "wms")
CONFIGURED = (*SYSTEMS, "courier")  # the courier (it owns the delivery date) offers no export here
SSO_HEADER = "X-Forwarded-User"
TRUSTED, UNTRUSTED = ("127.0.0.1", 41000), ("203.0.113.9", 41000)
PAGES = ("/console/runs", "/console/runs/1", "/console/tickets", "/console/dead", "/console/ownership",
         "/console/health", "/console/deliveries/1", "/console/runs/1/report.html")


# ---- the hub ------------------------------------------------------------------------------------------------


def _hub(tmp_path: Path, sqlite_url: str, clock: Clock, twins: dict[str, GenericTwin] | None = None,
         page_size: int | None = None) -> Hub:
    lines = [f'[hub]\nmappings_dir = "{review_mappings(tmp_path / "mappings")}"\nclock_skew_seconds = 2\n'
             f'data_dir = "{tmp_path / "var"}"\n',
             f'[console]\ntrusted_user_header = "{SSO_HEADER}"\n'
             + (f"page_size = {page_size}\n" if page_size else "") + console_users(iterations=1000)]
    for name in CONFIGURED:
        twin = twins[name] if twins else _twin(name)
        lines.append(f'[systems.{name}]\norigin = {"true" if name == "crm" else "false"}\n'
                     f'base_url = "{twin.base_url}"\n'
                     + (f'export_url = "{twin.export_url}"\n' if twin.export_url else "")
                     + 'webhook_secrets_env = "CONSOLE_TEST_SECRETS"\ncredentials_env = "CONSOLE_TEST_TOKEN"\n')
    config = tmp_path / "tickethub.toml"
    config.write_text("\n".join(lines), encoding="utf-8")
    return bootstrap(load_settings(config, environ={}), engine=make_engine(sqlite_url), clock=clock)


def _twin(name: str, clock: Clock | None = None) -> GenericTwin:
    export = None if name == "courier" else "/export"
    if clock is None:
        return GenericTwin(name, SECRET, EXPORT_TOKEN, export_path=export)
    return GenericTwin(name, SECRET, EXPORT_TOKEN, clock, export_path=export)


@dataclass
class World(TwinWorld):
    run_id: int = 0
    flagged: dict[str, int] = field(default_factory=dict)  # crm case -> its WMS address item awaiting review
    dead_id: int = 0

    def local(self, case: str, system: str) -> str:
        with self.hub.store.unit_of_work() as uow:
            found = uow.tickets.xref_map(system, list(self.twins[system].records))
        return next(local for local, ticket in found.items() if ticket == self.tickets[case])

    def state(self, case: str) -> dict[str, Any]:
        """What a refused request must leave as it was: the golden address, the item, history, deliveries."""
        ticket = self.tickets[case]
        with self.hub.store.unit_of_work() as uow:
            item = uow.reconcile.item(self.run_id, self.flagged[case])
            assert item is not None
            return {"address": uow.tickets.get(ticket).fields["customer.address"].value,
                    "decision": item["decision"], "awaiting_review": item["awaiting_review"],
                    "history": len(uow.tickets.history(ticket)),
                    "deliveries": [(d["id"], d["state"]) for d in uow.deliveries.for_ticket(ticket)]}

    def delivery_state(self, delivery_id: int) -> str:
        with self.hub.store.unit_of_work() as uow:
            row = uow.deliveries.get(delivery_id)
        assert row is not None
        return str(row["state"])


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONSOLE_TEST_SECRETS", SECRET)
    monkeypatch.setenv("CONSOLE_TEST_TOKEN", EXPORT_TOKEN)
    monkeypatch.delenv("TICKETHUB_CONSOLE_SECRET", raising=False)


@pytest.fixture
def world(tmp_path: Path, sqlite_url: str, clock: Clock) -> World:
    return _world(tmp_path, sqlite_url, clock)


def _world(tmp_path: Path, sqlite_url: str, clock: Clock) -> World:
    """Two tickets (the first one's customer hostile: markup for a name, an Arabic address, a 20,000-character
    fault), their WMS addresses changed behind the hub's back and held for review by a full run, and a dead
    letter (the ERP refused a write's signature)."""
    clock.now = T0
    twins = {name: _twin(name, clock) for name in CONFIGURED}
    hub = _hub(tmp_path, sqlite_url, clock, twins)
    client = httpx.Client(transport=transport(*twins.values()))
    built: dict[str, Connector] = {}

    def connector_for(system: str) -> Connector:
        if system not in built:
            built[system] = build_connector(system, hub.settings, {s: [SECRET] for s in twins}, client,
                                            {s: EXPORT_TOKEN for s in twins})
        return built[system]

    w = World(hub, clock, twins, connector_for)
    crm = twins["crm"]
    crm.create("agent@example.com", local_id="CASE-1", **{
        "contact.name": SCRIPT_NAME, "contact.phone": "+1 555 0100", "contact.address": ARABIC_ADDRESS,
        "case.description": LONG_TEXT, "case.product": HEBREW_NOTE, "case.serial_number": "SN-1",
        "case.status": "New"})
    w.crm_change("CASE-1")
    crm.create("agent@example.com", local_id="CASE-2", **{
        "contact.name": "Ada Lovelace", "contact.phone": "+44 20 7946 0000", "contact.address": "12 Analytical St",
        "case.description": "pump jams", "case.product": "PUMP-100", "case.serial_number": "SN-2",
        "case.status": "New"})
    w.crm_change("CASE-2")
    w.deliver_all()

    clock.now += timedelta(minutes=30)
    twins["wms"].edit(w.local("CASE-1", "wms"), "clerk.li", **{"shipment.delivery_address": IMG_TAG})
    twins["wms"].edit(w.local("CASE-2", "wms"), "clerk.li", **{"shipment.delivery_address": "Loading dock 7"})
    clock.now += timedelta(minutes=5)
    report = run_reconcile(hub, connector_for, ReconcileRequest(full=True)).report
    w.run_id = report.run.id
    for case in ("CASE-1", "CASE-2"):
        [item] = [i for i in report.items if i.ticket_id == w.tickets[case] and i.field == "customer.address"]
        assert item.system == "wms" and item.awaiting_review and item.action == "awaiting_review", item
        w.flagged[case] = item.id
    w.deliver_all()

    twins["erp"].secret = WRONG_SECRET  # the ERP refuses the hub's signature: a 401, dead-lettered at once
    crm.edit("CASE-1", "agent@example.com", **{"contact.phone": "+1 555 0199"})
    w.crm_change("CASE-1")
    w.deliver_all()
    twins["erp"].secret = SECRET
    with hub.store.unit_of_work() as uow:
        [dead] = uow.deliveries.find("dead", "erp", None, 10)
    assert dead["last_status"] == 401 and dead["ticket_id"] == w.tickets["CASE-1"], dead
    w.dead_id = int(dead["id"])
    return w


def _client(hub: Hub, peer: tuple[str, int] = ("testclient", 50000)) -> TestClient:
    return TestClient(create_app(hub, TOKEN, webhook_secrets={}), follow_redirects=False, client=peer)


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html[:2000]
    return found.group(1)


def _login(client: TestClient, name: str, secret: str, next_: str = "/console/runs",
           headers: dict[str, str] | None = None) -> httpx.Response:
    page = client.get("/console/login", params={"next": next_}, headers=headers)
    assert page.status_code == 200
    return client.post("/console/login", headers=headers,
                       data={"name": name, "secret": secret, "csrf": _csrf(page.text), "next": next_})


def _signed_in(hub: Hub, name: str, secret: str) -> tuple[TestClient, str]:
    """A client with a session, and the session's CSRF token (from a page's forms)."""
    client = _client(hub)
    answer = _login(client, name, secret)
    assert answer.status_code == 303, answer.text
    page = client.get("/console/runs")
    assert page.status_code == 200
    return client, _csrf(page.text)


def _cookies(response: httpx.Response) -> dict[str, str]:
    """Set-Cookie headers by cookie name (the whole header, attributes included)."""
    return {header.split("=", 1)[0]: header for header in response.headers.get_list("set-cookie")}


def _refusal(response: httpx.Response) -> str:
    """What a refused request's page says (the console answers with a page in its language, not JSON): the
    error page's message, or the refused decisions listed on the decisions' result page."""
    assert response.headers["content-type"].startswith("text/html"), response.headers
    found = (re.search(r'<p class="error" role="alert" id="error">(.*?)</p>', response.text, re.S)
             or re.search(r'<ul id="refusals"[^>]*>(.*?)</ul>', response.text, re.S))
    assert found, response.text[:2000]
    return html.unescape(re.sub(r"<[^>]+>", " ", found.group(1)))


def _rows(page: str) -> list[int]:
    return [int(i) for i in re.findall(r'<tr data-item="(\d+)"', page)]


# ---- logging in ---------------------------------------------------------------------------------------------


def test_every_page_needs_a_login_and_sends_you_back_after_it(world: World) -> None:
    client = _client(world.hub)
    for path in PAGES:
        answer = client.get(path)
        assert answer.status_code == 303, (path, answer.status_code)
        assert answer.headers["location"] == "/console/login?" + urlencode({"next": path}), path
    before = world.state("CASE-2")
    for path, data in ((f"/console/runs/{world.run_id}/decide", {"item": str(world.flagged["CASE-2"])}),
                       ("/console/dead/replay", {"id": str(world.dead_id)})):
        answer = client.post(path, data=data)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/console/login?"), path
    assert world.state("CASE-2") == before and world.delivery_state(world.dead_id) == "dead"
    assert client.get("/console").headers["location"] == "/console/runs"

    answer = _login(client, OPERATOR, OPERATOR_PASSWORD, next_="/console/dead")
    assert answer.status_code == 303 and answer.headers["location"] == "/console/dead"
    page = client.get("/console/dead")
    assert page.status_code == 200 and 'data-role="operator"' in page.text and f"Signed in as {OPERATOR}" in page.text


def test_a_wrong_password_and_an_unknown_name_get_the_same_refusal(world: World) -> None:
    client = _client(world.hub)
    refusals = [_login(client, OPERATOR, "not-the-password"), _login(client, "nobody", OPERATOR_PASSWORD),
                _login(client, VIEWER, OPERATOR_PASSWORD), _login(client, "", TOKEN),
                _login(client, OPERATOR, "")]
    alerts = set()
    for answer in refusals:
        assert answer.status_code == 401, answer.status_code
        assert "tickethub_session" not in _cookies(answer)
        alerts.add(re.search(r'<p class="error" role="alert">([^<]*)</p>', answer.text).group(1))  # type: ignore[union-attr]
    assert alerts == {"Wrong name, password or token."}
    assert client.get("/console/runs").status_code == 303  # still not signed in

    viewer = _login(client, VIEWER, VIEWER_PASSWORD)
    assert viewer.status_code == 303 and "tickethub_session" in _cookies(viewer)
    assert 'data-role="viewer"' in client.get("/console/runs").text

    # the API token under any typed name signs in an operator of that name
    other = _client(world.hub)
    assert _login(other, "night-shift", TOKEN).status_code == 303
    page = other.get("/console/runs").text
    assert 'data-role="operator"' in page and "Signed in as night-shift" in page


def test_forms_without_the_right_csrf_token_are_refused_and_change_nothing(world: World) -> None:
    client = _client(world.hub)
    page = client.get("/console/login")
    for token in ("", "forged-token"):
        answer = client.post("/console/login", data={"name": OPERATOR, "secret": OPERATOR_PASSWORD, "csrf": token})
        assert answer.status_code == 403 and "tickethub_session" not in _cookies(answer)
    assert client.post("/console/login", data={"name": OPERATOR, "secret": OPERATOR_PASSWORD,
                                               "csrf": _csrf(page.text)}).status_code == 303

    client, csrf = _signed_in(world.hub, OPERATOR, OPERATOR_PASSWORD)
    other_session = _signed_in(world.hub, OPERATOR, OPERATOR_PASSWORD)[1]  # a real token, of another session
    item = world.flagged["CASE-2"]
    before = world.state("CASE-2")
    decision = {"item": str(item), f"choice-{item}": "override", f"value-{item}": "Gate 9"}
    for token in (None, "", "forged", other_session):
        data = decision if token is None else {**decision, "csrf": token}
        for path in (f"/console/runs/{world.run_id}/confirm", f"/console/runs/{world.run_id}/decide"):
            answer = client.post(path, data=data)
            assert answer.status_code == 403, (path, token, answer.status_code)
            assert _refusal(answer) == "The form expired; reload the page and try again."
        replay = client.post("/console/dead/replay", data={"id": str(world.dead_id)} | (
            {} if token is None else {"csrf": token}))
        assert replay.status_code == 403
        assert client.post("/console/logout", data={} if token is None else {"csrf": token}).status_code == 403
    assert world.state("CASE-2") == before and world.delivery_state(world.dead_id) == "dead"
    assert client.get("/console/runs").status_code == 200  # the refused logouts did not sign out

    assert client.post("/console/logout", data={"csrf": csrf}).status_code == 303
    assert client.get("/console/runs").status_code == 303


def test_a_viewer_reads_everything_but_may_not_decide_or_replay(world: World) -> None:
    client, csrf = _signed_in(world.hub, VIEWER, VIEWER_PASSWORD)
    run = client.get(f"/console/runs/{world.run_id}").text
    assert f'<tr data-item="{world.flagged["CASE-2"]}"' in run
    for control in ('class="pick"', 'type="radio"', 'class="override"', 'id="review-decisions"', 'id="select-all"'):
        assert control not in run, control
    dead = client.get("/console/dead").text
    assert f'data-delivery="{world.dead_id}"' in dead and 'id="replay-selected"' not in dead
    assert 'name="id"' not in dead
    assert "replay-one" not in client.get(f"/console/deliveries/{world.dead_id}").text

    item = world.flagged["CASE-2"]
    before = world.state("CASE-2")
    for path in (f"/console/runs/{world.run_id}/confirm", f"/console/runs/{world.run_id}/decide"):
        answer = client.post(path, data={"csrf": csrf, "item": str(item), f"choice-{item}": "override",
                                         f"value-{item}": "forged by a viewer"})
        assert answer.status_code == 403 and _refusal(answer) == "Only operators may do this.", path
    answer = client.post("/console/dead/replay", data={"csrf": csrf, "id": str(world.dead_id)})
    assert answer.status_code == 403
    assert world.state("CASE-2") == before and world.delivery_state(world.dead_id) == "dead"


def test_the_session_cookie_is_httponly_lax_and_secure_behind_a_trusted_https_proxy(world: World) -> None:
    plain = _login(_client(world.hub), OPERATOR, OPERATOR_PASSWORD)
    cookie = _cookies(plain)["tickethub_session"]
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "samesite", "path", "max-age"} <= attributes and "secure" not in attributes, cookie
    assert re.search(r"(?i)samesite=lax", cookie) and re.search(r"(?i)path=/console(;|$)", cookie)
    assert re.search(r"(?i)max-age=43200", cookie)  # [console] session_hours = 12

    https = {"X-Forwarded-Proto": "https"}
    proxied = _client(world.hub, TRUSTED)
    login_page = proxied.get("/console/login", headers=https)
    login_cookie = _cookies(login_page)["tickethub_login"]
    assert re.search(r"(?i);\s*secure(;|$)", login_cookie) and "httponly" in login_cookie.lower(), login_cookie
    # the test client speaks plain HTTP to the app, so it keeps a Secure cookie to itself: sent by hand here
    behind = proxied.post("/console/login", headers={**https, "Cookie": login_cookie.split(";")[0]},
                          data={"name": OPERATOR, "secret": OPERATOR_PASSWORD, "csrf": _csrf(login_page.text)})
    assert behind.status_code == 303, behind.text
    cookie = _cookies(behind)["tickethub_session"]
    assert re.search(r"(?i);\s*secure(;|$)", cookie) and "httponly" in cookie.lower(), cookie

    spoofed = _login(_client(world.hub, UNTRUSTED), OPERATOR, OPERATOR_PASSWORD, headers=https)
    assert spoofed.status_code == 303 and "secure" not in _cookies(spoofed)["tickethub_session"].lower()

    # a page's answer is not cached, framed or sniffed
    client, _ = _signed_in(world.hub, OPERATOR, OPERATOR_PASSWORD)
    page = client.get("/console/runs")
    assert page.headers["cache-control"] == "no-store" and page.headers["x-content-type-options"] == "nosniff"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert "script-src 'self'" in page.headers["content-security-policy"]


def test_the_single_sign_on_header_counts_only_from_a_trusted_proxy(world: World) -> None:
    spoofed = _client(world.hub, UNTRUSTED)
    for name in ("someone", OPERATOR):
        answer = spoofed.get("/console/runs", headers={SSO_HEADER: name})
        assert answer.status_code == 303 and answer.headers["location"].startswith("/console/login"), name
    item = world.flagged["CASE-2"]
    before = world.state("CASE-2")
    forged = spoofed.post(f"/console/runs/{world.run_id}/decide", headers={SSO_HEADER: OPERATOR},
                          data={"item": str(item), f"choice-{item}": "override", f"value-{item}": "spoofed"})
    assert forged.status_code == 303 and world.state("CASE-2") == before

    proxy = _client(world.hub, TRUSTED)
    assert proxy.get("/console/runs").status_code == 303  # the proxy named nobody
    unlisted = proxy.get(f"/console/runs/{world.run_id}", headers={SSO_HEADER: "zhang.wei@example.com"})
    assert unlisted.status_code == 200
    assert 'data-role="viewer"' in unlisted.text and "Signed in as zhang.wei@example.com" in unlisted.text
    assert 'action="/console/logout"' not in unlisted.text  # the proxy's session, not the console's
    listed = proxy.get(f"/console/runs/{world.run_id}", headers={SSO_HEADER: OPERATOR})
    assert listed.status_code == 200 and 'data-role="operator"' in listed.text
    assert 'id="review-decisions"' in listed.text
    # the CSRF token of a proxy-signed-in user is bound to the user: the viewer's does not act for the operator
    viewer_token = _csrf(unlisted.text)
    answer = proxy.post(f"/console/runs/{world.run_id}/confirm", headers={SSO_HEADER: OPERATOR},
                        data={"csrf": viewer_token, "item": str(item)})
    assert answer.status_code == 403
    answer = proxy.post(f"/console/runs/{world.run_id}/confirm", headers={SSO_HEADER: OPERATOR},
                        data={"csrf": _csrf(listed.text), "item": str(item)})
    assert answer.status_code == 200 and 'id="confirm-decisions"' in answer.text


@pytest.mark.parametrize("target", ["//evil.example", "https://evil.example/console", "/\\evil.example",
                                    "http:/console", "javascript:alert(1)", "evil.example/console"])
def test_no_redirect_leaves_the_console(world: World, target: str) -> None:
    client = _client(world.hub)
    page = client.get("/console/login", params={"next": target})
    assert 'name="next" value="/console/runs"' in page.text
    answer = client.post("/console/login", data={"name": OPERATOR, "secret": OPERATOR_PASSWORD,
                                                  "csrf": _csrf(page.text), "next": target})
    assert answer.status_code == 303 and answer.headers["location"] == "/console/runs"
    switched = client.get("/console/lang/zh", params={"next": target})
    assert switched.status_code == 303 and switched.headers["location"] == "/console/runs"


# ---- the language -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("accept", "lang"), [
    ("zh-CN,zh;q=0.9,en;q=0.8", "zh"), ("en-US,en;q=0.9,zh;q=0.8", "en"), ("fr-FR,fr;q=0.9", "en"),
    ("en;q=0.3, zh-TW;q=0.7", "zh"), ("", "en"), ("zh;q=nonsense, en", "en")])
def test_the_language_follows_accept_language(world: World, accept: str, lang: str) -> None:
    page = _client(world.hub).get("/console/login", headers={"Accept-Language": accept})
    if lang == "zh":
        assert '<html lang="zh-CN">' in page.text and "密码或令牌" in page.text and "Password" not in page.text
    else:
        assert '<html lang="en">' in page.text and "Password or token" in page.text


def test_the_language_switch_sets_a_cookie_that_wins_over_the_browser(world: World) -> None:
    client, _ = _signed_in(world.hub, OPERATOR, OPERATOR_PASSWORD)
    assert "Dead letters" in client.get("/console/runs").text
    switched = client.get("/console/lang/zh", params={"next": f"/console/runs/{world.run_id}"})
    assert switched.status_code == 303 and switched.headers["location"] == f"/console/runs/{world.run_id}"
    assert re.search(r"(?i)^lang=zh;.*path=/console", _cookies(switched)["lang"])
    page = client.get(f"/console/runs/{world.run_id}", headers={"Accept-Language": "en"}).text
    for label in ("对账批次", "死信", "字段归属", "运行状况", "筛选", "待复核", "复核所选的决定"):
        assert label in page, label
    assert 'id="lang-switch" href="/console/lang/en?next=' in page and ">English</a>" in page

    unknown = client.get("/console/lang/fr", params={"next": "/console/runs"})
    assert unknown.status_code == 303 and "lang" not in _cookies(unknown)
    assert "对账批次" in client.get("/console/runs").text
    back = client.get("/console/lang/en", params={"next": "/console/runs"})
    assert "lang=en" in _cookies(back)["lang"]
    assert "Dead letters" in client.get("/console/runs", headers={"Accept-Language": "zh-CN"}).text


# ---- hostile data -------------------------------------------------------------------------------------------


def test_hostile_values_are_shown_as_text_on_every_page(world: World) -> None:
    client, csrf = _signed_in(world.hub, OPERATOR, OPERATOR_PASSWORD)
    ticket = world.tickets["CASE-1"]

    def clean(page: str, *escaped: str) -> None:
        assert SCRIPT_NAME not in page and "<img" not in page and "onerror=\"" not in page
        for text in escaped:
            assert text in page, text

    page = client.get(f"/console/tickets/{ticket}")
    assert page.status_code == 200
    clean(page.text, ESCAPED_SCRIPT)
    assert f'<bdi class="value">{ARABIC_ADDRESS}</bdi>' in page.text  # isolated, so it cannot reorder the row
    assert f'<bdi class="value">{HEBREW_NOTE}</bdi>' in page.text
    assert f'<bdi class="value">{LONG_TEXT}</bdi>' in page.text  # all 20,000 characters, as they are
    assert len(LONG_TEXT) == 20_000

    run = client.get(f"/console/runs/{world.run_id}").text
    clean(run, ESCAPED_IMG_TAG, ARABIC_ADDRESS)
    by_ticket = client.get("/console/tickets", params={"q": world.local("CASE-1", "wms")})
    assert by_ticket.status_code == 303 and by_ticket.headers["location"] == f"/console/tickets/{ticket}"
    search = client.get("/console/tickets", params={"q": SCRIPT_NAME}).text
    clean(search, ESCAPED_SCRIPT)

    item = world.flagged["CASE-1"]
    confirm = client.post(f"/console/runs/{world.run_id}/confirm", data={
        "csrf": csrf, "item": str(item), f"choice-{item}": "override", f"value-{item}": IMG_TAG})
    assert confirm.status_code == 200
    clean(confirm.text, ESCAPED_IMG_TAG, f'name="value-{item}" value="{ESCAPED_IMG_TAG}"')

    dead = client.get("/console/dead").text
    delivery = client.get(f"/console/deliveries/{world.dead_id}").text
    for shown in (dead, delivery):
        assert "+1 555 0199" in shown and "HTTP 401" in shown
    failed = _login(_client(world.hub), SCRIPT_NAME, "wrong")
    assert failed.status_code == 401
    clean(failed.text, f'value="{ESCAPED_SCRIPT}"')


def test_the_html_report_the_console_serves_shows_hostile_values_as_text(world: World) -> None:
    client, _ = _signed_in(world.hub, OPERATOR, OPERATOR_PASSWORD)
    answer = client.get(f"/console/runs/{world.run_id}/report.html")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/html")
    assert "<img src=x" not in answer.text and ESCAPED_IMG_TAG in answer.text
    assert "sandbox" in answer.headers["content-security-policy"]  # and no script would run in it anyway


# ---- a large run --------------------------------------------------------------------------------------------


KINDS = ("drift", "missing", "conflict")
ITEMS = 10_000


@pytest.fixture
def big_run(tmp_path: Path, sqlite_url: str, clock: Clock) -> tuple[Hub, int, list[dict[str, Any]]]:
    return _big_run(tmp_path, sqlite_url, clock)


def _big_run(tmp_path: Path, sqlite_url: str, clock: Clock) -> tuple[Hub, int, list[dict[str, Any]]]:
    """A finished run of 10,000 items, stored as a run stores them: systems in turn, kinds in turn, every
    500th item awaiting review."""
    clock.now = T0
    hub = _hub(tmp_path, sqlite_url, clock)
    items = []
    for n in range(ITEMS):
        system, kind = SYSTEMS[n % 4], KINDS[(n // 4) % 3]
        flagged = n % 500 == 0
        items.append({"item": {
            "ticket_id": f"20261201-SVC-{n % 99_999 + 1:05d}", "kind": kind, "system": system,
            "local_id": f"{system.upper()}-{n}", "field": "customer.name",
            "values": [{"source": "golden", "system": "crm", "value": f"客户 {n}", "author": "agent@example.com",
                        "author_rank": 50, "system_rank": 50, "modified_at": "2026-12-01T08:00:00Z", "owner": True}],
            "rule": "flagged" if flagged else "newest", "reason": f"reason {n}",
            "action": "awaiting_review" if flagged else "repaired", "awaiting_review": flagged,
            "responsible": f"author-{n % 7}"}})
    with hub.store.unit_of_work() as uow:
        run_id = uow.reconcile.start("full", False, None, list(SYSTEMS), [], T0)
        uow.commit()
    with hub.store.unit_of_work() as uow:
        ids = uow.reconcile.add_items(run_id, items)
        uow.reconcile.finish(run_id, "done", T0 + timedelta(minutes=3), ITEMS, ITEMS * 4, [])
        uow.commit()
    stored = [{**item["item"], "id": i} for item, i in zip(items, ids, strict=True)]
    return hub, run_id, stored


def test_a_run_of_ten_thousand_items_is_paged_and_filtered(big_run: tuple[Hub, int, list[dict[str, Any]]]) -> None:
    hub, run_id, items = big_run
    client, _ = _signed_in(hub, OPERATOR, OPERATOR_PASSWORD)
    ids = [i["id"] for i in items]

    first = client.get(f"/console/runs/{run_id}")
    assert first.status_code == 200
    assert _rows(first.text) == ids[:100]
    assert "Page 1 of 100 (10000 items)" in first.text
    assert 'rel="next" href="?page=2"' in first.text and 'rel="prev"' not in first.text
    assert '<div class="card"><b>10000</b><span>Discrepancies</span></div>' in first.text
    assert '<div class="card"><b>20</b><span>Awaiting review</span></div>' in first.text

    middle = client.get(f"/console/runs/{run_id}", params={"page": 42}).text
    assert _rows(middle) == ids[4100:4200] and "Page 42 of 100" in middle
    assert 'rel="prev" href="?page=41"' in middle and 'rel="next" href="?page=43"' in middle
    last = client.get(f"/console/runs/{run_id}", params={"page": 9999}).text
    assert _rows(last) == ids[9900:] and "Page 100 of 100 (10000 items)" in last and 'rel="next"' not in last
    assert _rows(client.get(f"/console/runs/{run_id}", params={"page": -3}).text) == ids[:100]
    assert client.get(f"/console/runs/{run_id}", params={"page": "two"}).status_code == 422

    erp = [i["id"] for i in items if i["system"] == "erp"]
    filtered = client.get(f"/console/runs/{run_id}", params={"system": "erp"}).text
    assert _rows(filtered) == erp[:100] and "Page 1 of 25 (2500 items)" in filtered
    assert 'rel="next" href="?system=erp&amp;page=2"' in filtered
    assert '<option value="erp" selected>erp</option>' in filtered
    last = client.get(f"/console/runs/{run_id}", params={"system": "erp", "page": 9999}).text
    assert _rows(last) == erp[2400:] and "Page 25 of 25 (2500 items)" in last

    both = [i["id"] for i in items if i["system"] == "wms" and i["kind"] == "conflict"]
    page = client.get(f"/console/runs/{run_id}", params={"system": "wms", "kind": "conflict", "page": 2}).text
    assert _rows(page) == both[100:200] and f"({len(both)} items)" in page
    flagged = [i["id"] for i in items if i["awaiting_review"]]
    page = client.get(f"/console/runs/{run_id}", params={"action": "awaiting_review"}).text
    assert _rows(page) == flagged and "Page 1 of 1 (20 items)" in page and page.count('class="pick"') == 20
    page = client.get(f"/console/runs/{run_id}", params={"author": "author-3", "system": "mes"}).text
    assert _rows(page) == [i["id"] for i in items if i["responsible"] == "author-3" and i["system"] == "mes"][:100]
    nothing = client.get(f"/console/runs/{run_id}", params={"system": "no-such-system", "page": 5}).text
    assert _rows(nothing) == [] and "Page 1 of 1 (0 items)" in nothing


# ---- decisions ----------------------------------------------------------------------------------------------


def test_decisions_through_the_console(world: World) -> None:
    client, csrf = _signed_in(world.hub, OPERATOR, OPERATOR_PASSWORD)
    run, item = world.run_id, world.flagged["CASE-2"]

    def decide(value: str, path: str = "decide", **extra: str) -> httpx.Response:
        return client.post(f"/console/runs/{run}/{path}", data={
            "csrf": csrf, "item": str(item), f"choice-{item}": "override", f"value-{item}": value, **extra})

    nothing = client.post(f"/console/runs/{run}/confirm", data={"csrf": csrf})
    assert nothing.status_code == 422 and "Select at least one item." in nothing.text

    # an override with nothing typed is refused (the console never empties a field) and changes nothing
    before = world.state("CASE-2")
    for path in ("confirm", "decide"):
        answer = decide("   ", path)
        assert answer.status_code == 422, answer.text
        assert f"item {item}: type the value to write" in _refusal(answer)
        assert world.state("CASE-2") == before

    # the confirmation says what will be written where; confirming it writes it
    confirm = decide("Loading dock 7, Gate B", "confirm")
    assert confirm.status_code == 200
    plan = re.search(r'<ul id="plan">(.*?)</ul>', confirm.text, re.S).group(1)  # type: ignore[union-attr]
    assert "customer.address = Loading dock 7, Gate B → the hub&#39;s record, crm, erp, wms" in plan, plan
    assert before["decision"] is None and world.state("CASE-2") == before  # nothing written yet
    done = decide("Loading dock 7, Gate B")
    assert done.status_code == 303
    assert done.headers["location"] == f"/console/runs/{run}?flash=decided&n=1&m=3"
    after = world.state("CASE-2")
    assert after["address"] == "Loading dock 7, Gate B" and after["decision"]["operator"] == OPERATOR
    assert after["decision"]["decision"] == "override" and not after["awaiting_review"]
    world.deliver_all()
    for system, path in (("wms", "shipment.delivery_address"), ("erp", "party.address"), ("crm", "contact.address")):
        assert world.twins[system].value(world.local("CASE-2", system), path) == "Loading dock 7, Gate B", system
    page = client.get(done.headers["location"]).text
    assert "1 decision(s) recorded; 3 write(s) queued." in page
    assert f"decided by {OPERATOR}: override" in page and f'class="pick" aria-label="Select {item}"' not in page
    with world.hub.store.unit_of_work() as uow:
        [entry] = [e for e in uow.tickets.history(world.tickets["CASE-2"]) if e.author == OPERATOR]
    assert entry.field == "customer.address" and entry.system == "tickethub" and entry.outcome == "applied"

    # decided twice: refused, nothing changes (accepting it instead is refused as well)
    settled = world.state("CASE-2")
    for data in ({}, {f"choice-{item}": "accept"}):
        again = decide("Somewhere else", **data)
        assert again.status_code in (409, 422), again.status_code
        assert f"item {item} was already decided (override by {OPERATOR})" in _refusal(again)
        assert world.state("CASE-2") == settled

    # the other item is still there to decide: accepting the proposal writes the hub's value back to the WMS
    other = world.flagged["CASE-1"]
    accepted = client.post(f"/console/runs/{run}/decide", data={"csrf": csrf, "item": str(other),
                                                                 f"choice-{other}": "accept"})
    assert accepted.status_code == 303 and "n=1" in accepted.headers["location"]
    world.deliver_all()
    assert world.twins["wms"].value(world.local("CASE-1", "wms"), "shipment.delivery_address") == ARABIC_ADDRESS


def test_an_operator_replays_a_dead_letter_from_the_console(world: World) -> None:
    client, csrf = _signed_in(world.hub, OPERATOR, OPERATOR_PASSWORD)
    page = client.get("/console/dead").text
    assert f'<input type="checkbox" name="id" value="{world.dead_id}" class="pick"' in page
    answer = client.post("/console/dead/replay", data={"csrf": csrf, "id": [str(world.dead_id), "nonsense", "999999"]})
    assert answer.status_code == 303 and answer.headers["location"] == "/console/dead?flash=replayed&n=1"
    assert world.delivery_state(world.dead_id) != "dead"
    world.deliver_all()
    assert world.twins["erp"].value(world.local("CASE-1", "erp"), "party.phone") == "+1 555 0199"
    page = client.get(answer.headers["location"]).text
    assert "1 dead letter(s) replayed." in page and "No dead letter." in page


def test_a_form_too_large_is_refused(world: World) -> None:
    client, csrf = _signed_in(world.hub, OPERATOR, OPERATOR_PASSWORD)
    before = world.state("CASE-2")
    answer = client.post(f"/console/runs/{world.run_id}/decide",
                         data={"csrf": csrf, "item": str(world.flagged["CASE-2"]), "padding": "x" * 300_000})
    assert answer.status_code == 413 and world.state("CASE-2") == before


def test_dead_letters_are_paged_newest_first_and_filtered_by_system(tmp_path: Path, sqlite_url: str,
                                                                    clock: Clock) -> None:
    """25 dead letters at 10 a page: three pages, newest first, the last one short; the filter by system
    counts and pages only that system's; a page past the end shows the last."""
    from hub.store.tables import deliveries

    clock.now = T0
    hub = _hub(tmp_path, sqlite_url, clock, page_size=10)
    with hub.store.unit_of_work() as uow:
        ticket, _ = uow.tickets.get_or_create("crm", "CASE-DEAD", "SVC", T0)
        uow.conn.execute(deliveries.insert(), [
            {"ticket_id": ticket, "system": SYSTEMS[n % 2], "state": "dead", "fields": {}, "attempts": 3,
             "created_at": T0, "updated_at": T0, "last_status": 422, "last_error": f"refused {n}"}
            for n in range(25)])
        ids = sorted(int(i) for i in uow.conn.execute(deliveries.select().with_only_columns(deliveries.c.id))
                     .scalars())
        systems = {int(r.id): r.system for r in uow.conn.execute(deliveries.select())}
        uow.commit()
    client, _ = _signed_in(hub, OPERATOR, OPERATOR_PASSWORD)

    def shown(params: dict[str, Any]) -> tuple[list[int], str]:
        page = client.get("/console/dead", params=params)
        assert page.status_code == 200
        return [int(i) for i in re.findall(r'<tr data-delivery="(\d+)"', page.text)], page.text

    newest = ids[::-1]
    first, text = shown({})
    assert first == newest[:10] and "Page 1 of 3 (25 items)" in text and 'rel="next" href="?page=2"' in text
    assert shown({"page": 3})[0] == newest[20:] and shown({"page": 99})[0] == newest[20:]
    erp = [i for i in newest if systems[i] == SYSTEMS[1]]
    filtered, text = shown({"system": SYSTEMS[1], "page": 2})
    assert filtered == erp[10:] and f"Page 2 of 2 ({len(erp)} items)" in text
