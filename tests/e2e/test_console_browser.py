"""The operator console as an operator uses it: the hub as deployed (`tickethub up` between the demo's twins, the
WMS's copy of the address held for review), driven through headless Chromium by Playwright.

An operator logs in, opens the night's run, filters it to the WMS, overrides the flagged address after a
confirmation page that says what will be written where, and the value reaches the WMS and the ERP, the ticket's
timeline showing the operator's decision. A write the ERP refuses (a wrong signature: a permanent 401) becomes a
dead letter, and is replayed from the Dead letters page once the ERP's secret is right again. The console is
switched to Chinese. A viewer sees no decision or replay controls, and a forged POST with the viewer's own CSRF
token is refused 403 with nothing changed. A screenshot of each page is kept in test-artifacts/console-*.png, and
the browser's console logs no error on any page (the pages' Content-Security-Policy included)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from demo.story import AGENT, CLERK, CUSTOMER
from demo.world import World, free_port
from tests.console_world import OPERATOR, OPERATOR_PASSWORD, VIEWER, VIEWER_PASSWORD, console_users, review_mappings
from tests.e2e.harness import chromium as find_chromium

pytestmark = pytest.mark.e2e
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
WAIT = 45.0
SECOND_CASE = {**CUSTOMER, "contact.name": "李雷 Li Lei", "contact.phone": "+86 139 0000 1111",
               "contact.email": "li.lei@example.com", "contact.address": "北京市海淀区中关村大街 1 号",
               "case.serial_number": "PX9-55555"}
BEHIND_BACK = "仓库临时地址 (temporary)"
ERP_BEHIND_BACK = "Wang F. (typo)"
OVERRIDE = "上海市徐汇区漕溪北路 88 号 5 楼 (operator)"
NEW_PHONE = "+86 138 0000 9999"


def _playwright() -> Any:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        message = f"the Python package playwright is not installed ({exc})"
        if os.environ.get("CI") or os.environ.get("TICKETHUB_REQUIRE_SERVICES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return sync_playwright


# ---- the world ----------------------------------------------------------------------------------------------


class Deployed:
    """The deployed hub with two tickets whose WMS copies were edited behind its back, and the run that found
    them (plus a repaired ERP drift on the first ticket, so that filtering has something to hide)."""

    def __init__(self, world: World):
        self.world = world
        self.tickets: dict[str, str] = {}  # crm case -> ticket
        self.local: dict[str, dict[str, str]] = {}  # crm case -> system -> local id
        self.run_id = 0

    def open_case(self, case: str, fields: dict[str, Any]) -> None:
        w = self.world
        w.twins["crm"].create(AGENT, local_id=case, **fields)
        w.notify("crm", case)
        ticket = w.wait(lambda: w.linked("crm", case), WAIT, f"a ticket for {case}")
        xrefs = w.wait(lambda: (lambda x: x if {"erp", "mes", "wms"} <= x.keys() else None)(
            {x["system"]: x["local_id"] for x in w.ticket(ticket).get("xrefs", [])}), WAIT,
            f"the ERP, MES and WMS records of {ticket} to be linked")
        self.tickets[case], self.local[case] = ticket, xrefs
        w.wait(lambda: self.value(case, "wms", "shipment.delivery_address") == fields["contact.address"], WAIT,
               f"the WMS to have {case}'s address")

    def value(self, case: str, system: str, path: str) -> Any:
        local_id = self.local[case][system]
        twin = self.world.twins[system]
        return twin.value(local_id, path) if local_id in twin.records else None

    def settled(self) -> bool:
        return not any(self.world.get("/deliveries", state=state, limit=1)["deliveries"]
                       for state in ("pending", "in_flight", "retry_wait"))

    def wait_settled(self) -> None:
        self.world.wait(self.settled, WAIT, "every write to be delivered")

    def dead(self) -> list[dict[str, Any]]:
        return list(self.world.get("/deliveries", state="dead", limit=100)["deliveries"])

    def report(self) -> dict[str, Any]:
        return dict(self.world.get(f"/reconcile/runs/{self.run_id}.json"))

    def item(self, case: str, system: str, field: str) -> dict[str, Any]:
        [item] = [i for i in self.report()["items"]
                  if (i["ticket_id"], i["system"], i["field"]) == (self.tickets[case], system, field)]
        return item


@pytest.fixture
def deployed(tmp_path: Path) -> Iterator[Deployed]:
    world = World(tmp_path / "world", free_port(), token="console-e2e-token",
                  mappings_dir=review_mappings(tmp_path / "mappings"), extra_config=console_users())
    try:
        world.start()
        h = Deployed(world)
        h.open_case("CASE-1001", CUSTOMER)
        h.open_case("CASE-1002", SECOND_CASE)
        h.wait_settled()
        for case in ("CASE-1001", "CASE-1002"):  # behind the hub's back: no notice
            world.twins["wms"].edit(h.local[case]["wms"], CLERK, **{"shipment.delivery_address": BEHIND_BACK})
        world.twins["erp"].edit(h.local["CASE-1001"]["erp"], "accounting", **{"party.name": ERP_BEHIND_BACK})
        ran = world.reconcile()
        assert ran.returncode == 0, ran.stderr or ran.stdout
        h.run_id = int(world.get("/reconcile/runs", limit=1)["runs"][0]["id"])
        for case in ("CASE-1001", "CASE-1002"):
            flagged = h.item(case, "wms", "customer.address")
            assert flagged["action"] == "awaiting_review" and flagged["kind"] == "drift", flagged
        assert h.item("CASE-1001", "erp", "customer.name")["action"] == "repaired"
        h.wait_settled()
        yield h
    finally:
        world.stop()
        if (tmp_path / "world" / "hub.log").exists():
            print((tmp_path / "world" / "hub.log").read_text(errors="replace")[-6000:])


# ---- the browser --------------------------------------------------------------------------------------------


class Console:
    """One browser context (one signed-in person) with a page whose console errors are collected."""

    def __init__(self, browser: Any, base: str, errors: list[str]):
        self.base = base
        self.context = browser.new_context(viewport={"width": 1400, "height": 1000}, locale="en-US")
        self.page = self.context.new_page()
        self.page.set_default_timeout(20_000)
        self.page.on("console", lambda m: errors.append(f"{self.page.url}: {m.text}") if m.type == "error" else None)
        self.page.on("pageerror", lambda e: errors.append(f"{self.page.url}: {e}"))

    def go(self, path: str) -> Any:
        answer = self.page.goto(self.base + path)
        assert answer is not None and answer.status == 200, (path, answer and answer.status)
        return answer

    def login(self, name: str, password: str) -> None:
        self.page.goto(self.base + "/console/runs")
        assert self.page.url.startswith(self.base + "/console/login"), self.page.url
        self.page.fill("input[name=name]", name)
        self.page.fill("input[name=secret]", password)
        with self.page.expect_navigation():
            self.page.click("form[action='/console/login'] button[type=submit]")
        assert self.page.url == self.base + "/console/runs", self.page.url
        assert self.page.get_attribute("#me", "data-role") in ("operator", "viewer")

    def shot(self, name: str) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"console-{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        png = path.read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 10_000, f"{path} looks blank"

    def csrf(self) -> str:
        token = self.page.get_attribute("form[action='/console/logout'] input[name=csrf]", "value")
        assert token
        return token


def test_an_operator_reviews_decides_and_replays_through_the_console_and_a_viewer_cannot(deployed: Deployed) -> None:
    hub = deployed
    chromium, sync_playwright = find_chromium(), _playwright()
    world, run_id = hub.world, hub.run_id
    first, second = hub.item("CASE-1001", "wms", "customer.address"), hub.item("CASE-1002", "wms", "customer.address")
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            lin = Console(browser, world.base, errors)
            page = lin.page
            lin.login(OPERATOR, OPERATOR_PASSWORD)
            assert page.get_attribute("#me", "data-role") == "operator" and OPERATOR in page.inner_text("#me")

            # Runs: the night's run with its two items awaiting review
            row = page.locator(f"#runs tr[data-run='{run_id}']")
            assert row.count() == 1
            assert row.locator("td").nth(8).inner_text().strip() == "2"
            lin.shot("runs")
            with page.expect_navigation():
                row.locator(f"a[href='/console/runs/{run_id}']").click()
            assert page.url == f"{world.base}/console/runs/{run_id}"
            assert "2" in page.locator("#summary .card").nth(3).inner_text()
            assert page.locator(f"#items tr[data-item='{hub.item('CASE-1001', 'erp', 'customer.name')['id']}']"
                                ).count() == 1

            # filter to the WMS: the ERP's repaired drift goes, both flagged WMS items stay
            page.select_option("#filters select[name=system]", "wms")
            with page.expect_navigation():
                page.click("#filters button[type=submit]")
            assert "system=wms" in page.url
            systems = page.locator("#items tbody tr td:nth-child(5)").all_inner_texts()
            assert systems and set(systems) == {"wms"}, systems
            assert page.locator(f"#items tr[data-item='{first['id']}']").count() == 1
            assert page.locator(f"#items tr[data-item='{second['id']}']").count() == 1
            assert page.locator(f"#items tr[data-item='{hub.item('CASE-1001', 'erp', 'customer.name')['id']}']"
                                ).count() == 0
            assert BEHIND_BACK in page.inner_text(f"#items tr[data-item='{first['id']}']")
            lin.shot("run")

            # select the first ticket's item, override the address, review
            page.check(f"input.pick[name=item][value='{first['id']}']")
            page.check(f"input[name='choice-{first['id']}'][value=override]")
            page.fill(f"input[name='value-{first['id']}']", OVERRIDE)
            with page.expect_navigation():
                page.click("#review-decisions")
            assert page.url.endswith(f"/console/runs/{run_id}/confirm")
            plan = page.locator("#plan li")
            assert plan.count() == 1, page.inner_text("#plan")
            said = plan.first.inner_text()
            assert hub.tickets["CASE-1001"] in said and "customer.address" in said and OVERRIDE in said, said
            for target in ("the hub's record", "crm", "erp", "wms"):
                assert target in said, (target, said)
            lin.shot("confirm")
            with page.expect_navigation():
                page.click("#confirm-decisions")
            assert page.url.startswith(f"{world.base}/console/runs/{run_id}?") and "flash=decided" in page.url
            assert "1 decision(s) recorded" in page.inner_text("p.flash")
            decided = page.inner_text(f"#items tr[data-item='{first['id']}']")
            assert f"decided by {OPERATOR}: override" in decided and OVERRIDE in decided, decided
            assert page.locator(f"input.pick[value='{first['id']}']").count() == 0  # cannot be decided twice

            # the override reaches the WMS and the ERP (and the CRM), and the golden record holds it
            world.wait(lambda: hub.value("CASE-1001", "wms", "shipment.delivery_address") == OVERRIDE, WAIT,
                       "the override to reach the WMS")
            world.wait(lambda: hub.value("CASE-1001", "erp", "party.address") == OVERRIDE, WAIT,
                       "the override to reach the ERP")
            world.wait(lambda: hub.value("CASE-1001", "crm", "contact.address") == OVERRIDE, WAIT,
                       "the override to reach the CRM")
            assert world.golden(hub.tickets["CASE-1001"], "customer.address") == OVERRIDE
            assert hub.value("CASE-1002", "wms", "shipment.delivery_address") == BEHIND_BACK  # not selected
            hub.wait_settled()

            # the ticket page: the golden value with the operator as its author, the decision in the timeline
            lin.go(f"/console/tickets/{hub.tickets['CASE-1001']}")
            golden = page.inner_text("#golden tr[data-field='customer.address']")
            assert OVERRIDE in golden and OPERATOR in golden, golden
            decisions = [t for t in page.locator("#timeline tr[data-outcome=applied]").all_inner_texts()
                         if f"tickethub · {OPERATOR}" in t and OVERRIDE in t]
            assert len(decisions) == 1, page.inner_text("#timeline")
            assert f"run {run_id}" in decisions[0]
            assert page.locator("#timeline tr.delivery").count() >= 3
            lin.shot("ticket")

            # a write the ERP refuses for good (a wrong signature: 401) is dead-lettered at once
            erp = world.twins["erp"]
            right_secret = erp.secret
            erp.secret = "whsec_" + "d3JvbmctZXJwLXNlY3JldC13cm9uZy1lcnAtc2VjcmV0IQ=="
            world.twins["crm"].edit("CASE-1001", AGENT, **{"contact.phone": NEW_PHONE})
            world.notify("crm", "CASE-1001")
            [dead] = world.wait(lambda: [d for d in hub.dead() if d["system"] == "erp"], WAIT,
                                "the ERP's write to be dead-lettered")
            assert dead["last_status"] == 401, dead
            world.wait(lambda: hub.value("CASE-1001", "wms", "shipment.recipient_phone") == NEW_PHONE, WAIT,
                       "the WMS to take the phone (only the ERP refuses)")
            assert hub.value("CASE-1001", "erp", "party.phone") == CUSTOMER["contact.phone"]

            # a viewer: everything to read, nothing to decide or replay; a forged POST is refused
            viewer = Console(browser, world.base, errors)
            viewer.login(VIEWER, VIEWER_PASSWORD)
            vp = viewer.page
            assert vp.get_attribute("#me", "data-role") == "viewer"
            viewer.go(f"/console/runs/{run_id}")
            assert vp.locator(f"#items tr[data-item='{second['id']}']").count() == 1
            for control in ("input.pick", "input[type=radio]", "input.override", "#review-decisions",
                            "#select-all"):
                assert vp.locator(control).count() == 0, control
            viewer.go("/console/dead")
            assert vp.locator(f"#dead tr[data-delivery='{dead['id']}']").count() == 1
            assert vp.locator("#replay-selected").count() == 0 and vp.locator("#dead input.pick").count() == 0
            csrf = viewer.csrf()
            forged = viewer.context.request.post(f"{world.base}/console/runs/{run_id}/decide", form={
                "csrf": csrf, "item": str(second["id"]), f"choice-{second['id']}": "override",
                f"value-{second['id']}": "forged by a viewer"}, max_redirects=0)
            assert forged.status == 403, (forged.status, forged.text())
            replayed = viewer.context.request.post(f"{world.base}/console/dead/replay",
                                                   form={"csrf": csrf, "id": str(dead["id"])}, max_redirects=0)
            assert replayed.status == 403, (replayed.status, replayed.text())
            still = hub.item("CASE-1002", "wms", "customer.address")
            assert still["awaiting_review"] and still["decision"] is None, still
            assert [d["id"] for d in hub.dead() if d["system"] == "erp"] == [dead["id"]]
            assert hub.value("CASE-1002", "wms", "shipment.delivery_address") == BEHIND_BACK
            viewer.context.close()

            # the operator replays the dead letter once the ERP's secret is right again
            erp.secret = right_secret
            lin.go("/console/dead")
            dead_row = page.locator(f"#dead tr[data-delivery='{dead['id']}']")
            assert dead_row.count() == 1 and "401" in dead_row.inner_text()
            assert NEW_PHONE in dead_row.inner_text()
            lin.shot("dead")
            page.check(f"#dead input.pick[name=id][value='{dead['id']}']")
            with page.expect_navigation():
                page.click("#replay-selected")
            assert "flash=replayed" in page.url and "1 dead letter(s) replayed" in page.inner_text("p.flash")
            world.wait(lambda: hub.value("CASE-1001", "erp", "party.phone") == NEW_PHONE, WAIT,
                       "the replayed write to reach the ERP")
            world.wait(lambda: not [d for d in hub.dead() if d["system"] == "erp"], WAIT,
                       "the dead letter to leave the dead letters")
            lin.go("/console/dead")
            assert page.locator("#dead").count() == 0 and "No dead letter." in page.inner_text("main")

            # ownership and health
            lin.go("/console/ownership")
            address_row = page.locator("#matrix tbody tr", has_text="customer.address").first.inner_text()
            assert "owner" in address_row, address_row
            lin.shot("ownership")
            lin.go("/console/health")
            assert "ok" in page.inner_text("#ready")
            assert "erp" in page.inner_text("#queues")
            lin.shot("health")

            # Chinese: the switch in the header, kept for the next pages, and back
            lin.go(f"/console/runs/{run_id}")
            with page.expect_navigation():
                page.click("#lang-switch")
            assert page.url == f"{world.base}/console/runs/{run_id}"
            assert page.get_attribute("html", "lang") == "zh-CN"
            nav = page.inner_text("header nav")
            for label in ("对账批次", "工单", "死信", "字段归属", "运行状况"):
                assert label in nav, (label, nav)
            assert "筛选" in page.inner_text("#filters") and "差异" in page.inner_text("#summary")
            assert f"{OPERATOR} 已决定" in page.inner_text(f"#items tr[data-item='{first['id']}']")
            assert page.inner_text("#lang-switch") == "English"
            lin.shot("zh")
            lin.go("/console/dead")
            assert "没有死信。" in page.inner_text("main")
            with page.expect_navigation():
                page.click("#lang-switch")
            assert page.get_attribute("html", "lang") == "en" and "Dead letters" in page.inner_text("h1")
            lin.context.close()
        finally:
            browser.close()
    assert errors == [], errors
