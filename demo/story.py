"""The scripted day: six steps our users describe, played through the twins and checked through the hub's HTTP
API. Each step says what it showed (and what it measured) or fails with what was missing."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from demo.world import SKEW_SECONDS, DemoError, World

CASE = "CASE-1001"
CARRIER, COM, WAYBILL = "SF Express", "shunfeng", "SF1400012345678"
AGENT, SUPERVISOR = "agent@example.com", "supervisor@example.com"
ERP_USER, SHOPFLOOR, WAREHOUSE, CLERK = "accounting", "shopfloor-lead", "warehouse-lead", "clerk.li"
CUSTOMER: dict[str, Any] = {"contact.name": "王芳 Wang Fang", "contact.phone": "+86 138 0013 8000",
            "contact.email": "wang.fang@example.com", "contact.address": "上海市浦东新区世纪大道 100 号",
            "case.serial_number": "PX9-20931", "case.product": "Pump controller PX-9",
            "case.description": "Display flickers, then the controller resets", "case.status": "New"}
NEW_ADDRESS = "上海市徐汇区漕溪北路 88 号 3 楼"
ERP_PHONE = "+86 21 5555 0000"
MISSED_EMAIL = "fang.wang@example.cn"
BEHIND_BACK_ADDRESS = "仓库临时地址 (temporary)"
JOURNEY = [("1", "【上海】顺丰速运 已收取快件"), ("0", "快件在【上海虹桥中转场】完成分拣，准备发往下一站"),
           ("5", "快件交给李师傅，正在派送途中"), ("3", "已签收，签收人凭取货码签收")]
WAIT = 30.0  # seconds a step waits for the hub before it calls the demo failed


class Narrator(Protocol):
    def begin(self, number: int, title: str) -> None: ...
    def say(self, text: str) -> None: ...
    def note(self, text: str) -> None: ...
    def end(self, outcome: StepOutcome) -> None: ...
    def pause(self) -> None: ...


@dataclass
class StepOutcome:
    number: int
    title: str
    ok: bool
    lines: list[str] = field(default_factory=list)
    measured: dict[str, float] = field(default_factory=dict)  # what -> seconds

    def as_json(self) -> dict[str, Any]:
        return {"step": self.number, "title": self.title, "ok": self.ok, "lines": self.lines,
                "measured_seconds": {k: round(v, 3) for k, v in self.measured.items()}}


@dataclass
class Day:
    """The story's state as it goes: the ticket and each system's local ID."""

    world: World
    narrator: Narrator
    ticket_id: str = ""
    local: dict[str, str] = field(default_factory=dict)
    run_id: int | None = None
    outcomes: list[StepOutcome] = field(default_factory=list)

    # ---- helpers ------------------------------------------------------------------------------------

    def value(self, system: str, path: str) -> Any:
        local_id = self.local.get(system)
        twin = self.world.twins[system]
        return twin.value(local_id, path) if local_id in twin.records else None

    def until(self, condition: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
        return self.world.wait(condition, timeout, what)

    def timed(self, since: float, condition: Callable[[], Any], what: str) -> float:
        self.until(condition, what)
        return time.monotonic() - since

    def edit_and_notify(self, system: str, author: str, **fields: Any) -> float:
        self.world.twins[system].edit(self.local[system], author, **fields)
        return self.world.notify(system, self.local[system])

    def note(self, out: StepOutcome, line: str) -> None:
        """What the step showed: told now, and kept in its outcome."""
        out.lines.append(line)
        self.narrator.note(line)

    def history(self, outcome: str, system: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self.world.history(self.ticket_id)
                if e["outcome"] == outcome and (system is None or e["system"] == system)]

    def status(self) -> Any:
        return self.world.golden(self.ticket_id, "status")

    def settled(self) -> bool:
        """Nothing is waiting to be written anywhere."""
        return not any(self.world.get("/deliveries", state=state, limit=1)["deliveries"]
                       for state in ("pending", "in_flight", "retry_wait"))

    # ---- the day ------------------------------------------------------------------------------------

    def play(self) -> list[StepOutcome]:
        steps = [(self.opened, "A fault is reported in the CRM"),
                 (self.address_moves, "The customer's address changes in the CRM"),
                 (self.erp_edits_phone, "An ERP user edits the customer's phone"),
                 (self.repaired_and_shipped, "The MES reports progress; the WMS ships with a waybill"),
                 (self.resolved_needs_proof, "Resolved, first without proof, then with the courier's"),
                 (self.nightly_run, "Edited behind the hub's back, a webhook lost: reconciliation")]
        for number, (play, title) in enumerate(steps, start=1):
            outcome = StepOutcome(number, title, ok=False)
            self.narrator.begin(number, title)
            try:
                play(outcome)
                outcome.ok = True
            except DemoError as exc:
                outcome.lines.append(f"FAILED: {exc}")
            self.outcomes.append(outcome)
            self.narrator.end(outcome)
            if not outcome.ok:
                break
            self.narrator.pause()
        return self.outcomes

    def _first_record(self, system: str, path: str) -> Callable[[], str | None]:
        twin = self.world.twins[system]
        return lambda: next((r.id for r in list(twin.records.values()) if twin.value(r.id, path)), None)

    def _linked(self, system: str, local_id: str) -> Callable[[], bool]:
        return lambda: self.world.linked(system, local_id) == self.ticket_id

    def opened(self, out: StepOutcome) -> None:
        crm = self.world.twins["crm"]
        crm.create(AGENT, local_id=CASE, **CUSTOMER)
        self.local["crm"] = CASE
        sent = self.world.notify("crm", CASE)
        self.ticket_id = self.until(lambda: self.world.linked("crm", CASE), "the hub to assign a ticket ID")
        self.note(out, f"the hub assigned {self.ticket_id} to the CRM's {CASE}")
        for system, shows in (("erp", "party.name"), ("mes", "production.serial"), ("wms", "shipment.recipient")):
            local_id = self.until(self._first_record(system, shows), f"the {system.upper()} to receive the ticket")
            out.measured[f"{system} record"] = time.monotonic() - sent
            self.local[system] = local_id
            self.until(self._linked(system, local_id), f"the {system.upper()}'s {local_id} to be linked to the ticket")
        self.note(out, f"ERP {self.local['erp']}: a quote for {self.value('erp', 'party.name')}, "
                       f"{self.value('erp', 'sale.product_code')} ({self.value('erp', 'sale.serial')}), "
                       f"in {out.measured['erp record']:.2f} s")
        self.note(out, f"MES {self.local['mes']}: a repair order for {self.value('mes', 'production.serial')}: "
                       f"\"{self.value('mes', 'production.notes')}\", in {out.measured['mes record']:.2f} s")
        self.note(out, f"WMS {self.local['wms']}: the recipient {self.value('wms', 'shipment.recipient')}, "
                       f"in {out.measured['wms record']:.2f} s")
        xrefs = ", ".join(f"{x['system']} {x['local_id']}" for x in self.world.ticket(self.ticket_id)["xrefs"])
        self.note(out, f"{self.ticket_id} links {xrefs} — nobody retyped anything")

    def address_moves(self, out: StepOutcome) -> None:
        sent = self.edit_and_notify("crm", AGENT, **{"contact.address": NEW_ADDRESS})
        out.measured["erp address"] = self.timed(sent, lambda: self.value("erp", "party.address") == NEW_ADDRESS,
                                                 "the ERP to have the new address")
        out.measured["wms address"] = self.timed(
            sent, lambda: self.value("wms", "shipment.delivery_address") == NEW_ADDRESS, "the WMS to have it")
        self.note(out, f"\"{NEW_ADDRESS}\": in the ERP after {out.measured['erp address']:.2f} s, in the WMS after "
                       f"{out.measured['wms address']:.2f} s (from the CRM's webhook being accepted)")

    def erp_edits_phone(self, out: StepOutcome) -> None:
        phone = CUSTOMER["contact.phone"]
        sent = self.edit_and_notify("erp", ERP_USER, **{"party.phone": ERP_PHONE})
        [refused] = self.until(lambda: self.history("not_owner", "erp"), "the hub to refuse the ERP's phone")
        self.note(out, f"refused and recorded: {refused['author']} in the ERP set the phone to {ERP_PHONE}: "
                       f"{refused['reason']}")
        out.measured["erp restored"] = self.timed(sent, lambda: self.value("erp", "party.phone") == phone,
                                                  "the CRM's phone to be restored in the ERP")
        if self.world.golden(self.ticket_id, "customer.phone") != phone:
            raise DemoError("the golden record's phone changed")
        self.note(out, f"the CRM's {phone} restored in the ERP after {out.measured['erp restored']:.2f} s; "
                       "the golden record never changed")

    def repaired_and_shipped(self, out: StepOutcome) -> None:
        self.edit_and_notify("mes", SHOPFLOOR, **{"production.percent_done": 60, "production.state": "repair"})
        self.until(lambda: self.status() == "in_repair", "the ticket to be in repair")
        self.until(lambda: self.value("crm", "case.repair_progress") == 60, "the CRM to see 60 % progress")
        self.note(out, "MES: in repair, 60 % — the CRM's case shows the progress; only the MES may write it")
        self.edit_and_notify("mes", SHOPFLOOR, **{"production.percent_done": 100, "production.state": "done"})
        self.until(lambda: self.status() == "ready_to_ship", "the ticket to be ready to ship")
        self.note(out, "MES: done, 100 % — ready to ship")
        courier = self.world.courier
        assert courier is not None
        courier.script(COM, WAYBILL, JOURNEY)
        sent = self.edit_and_notify("wms", WAREHOUSE, **{"shipment.carrier": CARRIER,
                                                         "shipment.tracking_number": WAYBILL,
                                                         "shipment.state": "shipped"})
        self.until(lambda: self.status() == "shipped", "the ticket to be shipped (a waybill is its evidence)")
        self.until(lambda: (COM, WAYBILL) in courier.subscriptions, "the hub to subscribe the parcel")
        out.measured["courier subscribed"] = time.monotonic() - sent
        self.local["courier"] = f"{COM}:{WAYBILL}"
        self.until(lambda: self.world.linked("courier", self.local["courier"]) == self.ticket_id,
                   "the parcel to be linked to the ticket")
        self.note(out, f"WMS: shipped with {CARRIER} waybill {WAYBILL} — subscribed with the courier after "
                       f"{out.measured['courier subscribed']:.2f} s")
        self._parcel_moves("collected")

    def _parcel_moves(self, state: str) -> None:
        courier = self.world.courier
        assert courier is not None
        parcel = courier.parcels[(COM, WAYBILL)]
        if parcel.checkpoints:  # the vendor stamps whole seconds: one checkpoint a second keeps them in the past
            last = parcel.checkpoints[-1].at.timestamp()
            time.sleep(max(0.0, last + 1.05 - time.time()))
        push = courier.advance(COM, WAYBILL)
        if push is None or not push.acknowledged:
            raise DemoError(f"the hub did not acknowledge the courier's push ({push})")
        self.until(lambda: self.world.golden(self.ticket_id, "shipment.status") == state, f"the parcel {state}")
        self.narrator.say(f"courier: {state} (a signed push, acknowledged)")

    def resolved_needs_proof(self, out: StepOutcome) -> None:
        self.edit_and_notify("crm", AGENT, **{"case.status": "Resolved"})
        claimed = time.time()
        [refused] = self.until(lambda: self.history("no_evidence", "crm"), "the hub to refuse \"resolved\"")
        self.until(lambda: self.value("crm", "case.status") == "Shipped", "the CRM to be told the ticket is shipped")
        self.note(out, f"\"Resolved\" by {refused['author']} before delivery: refused ({refused['reason']}); the "
                       "CRM's case is set back to Shipped")
        for state in ("in_transit", "delivering", "delivered"):
            if state == "delivered":  # later than the refused claim by more than the clock-skew tolerance, as
                time.sleep(max(0.0, claimed + SKEW_SECONDS + 1.5 - time.time()))  # a real parcel's would be
            self._parcel_moves(state)
        self.until(lambda: self.status() == "delivered", "the ticket delivered on the courier's word")
        self.note(out, "courier: in transit, out for delivery, signed for — the ticket is delivered")
        self.until(lambda: self.value("crm", "case.status") == "Delivered", "the CRM to see the delivery")
        sent = self.edit_and_notify("crm", AGENT, **{"case.status": "Resolved"})
        out.measured["resolved"] = self.timed(sent, lambda: self.status() == "resolved", "the ticket to be resolved")
        self.note(out, f"\"Resolved\" again, now with the courier's signed delivery: accepted in "
                       f"{out.measured['resolved']:.2f} s")

    def nightly_run(self, out: StepOutcome) -> None:
        self.until(self.settled, "every write to be delivered")
        wms, crm = self.world.twins["wms"], self.world.twins["crm"]
        behind: dict[str, Any] = {"shipment.delivery_address": BEHIND_BACK_ADDRESS}
        wms.edit(self.local["wms"], CLERK, **behind)
        lost: dict[str, Any] = {"contact.email": MISSED_EMAIL}
        crm.edit(CASE, SUPERVISOR, **lost)
        self.note(out, f"behind the hub's back: {CLERK} typed \"{BEHIND_BACK_ADDRESS}\" into the WMS; "
                       f"{SUPERVISOR} changed the e-mail in the CRM and its webhook was lost")
        started = time.monotonic()
        ran = self.world.reconcile()
        if ran.returncode != 0:
            raise DemoError(f"tickethub reconcile exited {ran.returncode}: {ran.stderr.strip() or ran.stdout.strip()}")
        runs = self.world.get("/reconcile/runs", limit=1)["runs"]
        if not runs:
            raise DemoError("the reconciliation left no run")
        self.run_id = int(runs[0]["id"])
        report = self.world.get(f"/reconcile/runs/{self.run_id}.json")
        items = report["items"]
        for item in items:
            self.narrator.say(f"{item['kind']}: {item['system']} {item['field'] or ''} -> {item['action']} "
                              f"({item['rule']}; {item.get('responsible') or 'no author'})")
        self.until(lambda: self.value("wms", "shipment.delivery_address") == NEW_ADDRESS,
                   "the WMS's address to be repaired")
        self.until(lambda: self.value("erp", "party.email") == MISSED_EMAIL, "the lost e-mail change to reach the ERP")
        out.measured["reconcile and repair"] = time.monotonic() - started
        if self.world.golden(self.ticket_id, "customer.email") != MISSED_EMAIL:
            raise DemoError("the CRM's e-mail did not reach the golden record")
        kinds = ", ".join(f"{count} {kind}" for kind, count in report["summary"]["by_kind"].items())
        self.note(out, f"run {self.run_id}: {report['summary']['copies_compared']} copies compared, {kinds}; "
                       f"the WMS's address repaired, the CRM's e-mail applied and sent to the ERP, in "
                       f"{out.measured['reconcile and repair']:.1f} s")
        for not_checked in report["not_checked"]:
            self.note(out, f"not checked: {not_checked['system']} ({not_checked['reason']})")
