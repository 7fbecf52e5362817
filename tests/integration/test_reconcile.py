"""Reconciliation end to end, in process, on SQLite and PostgreSQL: twins seeded with known drift (a missed
webhook, a non-owner edit, two owners editing within the clock-skew window, an orphan, a deleted record, a
system without export), a run that decides, repairs and reports each, writes that reach the twins, and a
second run that finds nothing to do; operators' decisions, dry runs, failing reads, one run at a time."""

from __future__ import annotations

import csv
import io
import json
import shutil
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from typer.testing import CliRunner

from connectors.generic.twin import GenericTwin, transport
from hub.bootstrap import bootstrap
from hub.config import load_settings
from hub.core.ports import Connector
from hub.http.app import create_app
from hub.mapping_files import DEFAULT_DIR
from hub.plugins import build_connector
from hub.store.reconcile import RunInProgress
from hub.usecases.reconcile import (
    ReconcileRequest,
    finish_run,
    load_report,
    run_reconcile,
    start_run,
    write_reports,
)
from reconcile.report import CSV_COLUMNS, RunReport, to_html
from tests.conftest import Clock
from tests.twin_world import TwinWorld

SECRET = "whsec_cmVjb25jaWxlLXR3aW4tc2VjcmV0LTMyLWJ5dGVzIQ=="
TOKEN = "export-token"
T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


@dataclass
class World(TwinWorld):
    config: Path = field(kw_only=True)

    def run(self, **request: object) -> RunReport:
        self.clock.now += timedelta(minutes=5)
        outcome = run_reconcile(self.hub, self.connector_for, ReconcileRequest(**request))  # type: ignore[arg-type]
        return outcome.report


def _mappings(tmp_path: Path) -> Path:
    """The shipped mappings, with the customer's phone owned by the ERP too (two owners), and the MES's copy
    of the fault description held for review."""
    folder = tmp_path / "mappings"
    shutil.copytree(DEFAULT_DIR, folder, ignore=shutil.ignore_patterns("*.py", "__pycache__", "tryton_*",
                                                                       "bottlecrm.toml"))
    erp = (folder / "erp.toml").read_text()
    erp = erp.replace('[fields."customer.phone"]\nfield = "party.phone"\ndirection = "write"',
                      '[fields."customer.phone"]\nfield = "party.phone"\ndirection = "both"\nowner = true')
    (folder / "erp.toml").write_text(erp)
    mes = (folder / "mes.toml").read_text().replace(
        '[fields."fault.description"]\nfield = "production.notes"\ndirection = "write"',
        '[fields."fault.description"]\nfield = "production.notes"\ndirection = "write"\nreconcile = "review"')
    (folder / "mes.toml").write_text(mes)
    assert 'reconcile = "review"' in mes and "owner = true" in erp.split('"customer.phone"')[1][:80]
    return folder


@pytest.fixture
def world(tmp_path: Path, engine: Engine, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> World:
    clock.now = T0
    no_export = ("wms", "courier")
    twins = {name: GenericTwin(name, SECRET, TOKEN, clock, export_path=None if name in no_export else "/export")
             for name in ("crm", "erp", "mes", "wms", "courier")}
    _mappings(tmp_path)
    lines = [f'[hub]\nmappings_dir = "mappings"\nclock_skew_seconds = 2\ndata_dir = "{tmp_path / "var"}"\n']
    for name, twin in twins.items():
        origin = "true" if name == "crm" else "false"
        lines.append(f'[systems.{name}]\norigin = {origin}\nbase_url = "{twin.base_url}"\n'
                     'webhook_secrets_env = "RECONCILE_SECRETS"\ncredentials_env = "RECONCILE_TOKEN"\n'
                     + (f'export_url = "{twin.export_url}"\n' if twin.export_url else ""))
    config = tmp_path / "tickethub.toml"
    config.write_text("\n".join(lines))
    monkeypatch.setenv("RECONCILE_SECRETS", SECRET)
    monkeypatch.setenv("RECONCILE_TOKEN", TOKEN)
    hub = bootstrap(load_settings(config, environ={"RECONCILE_SECRETS": SECRET}), engine=engine, clock=clock)
    client = httpx.Client(transport=transport(*twins.values()))
    built: dict[str, Connector] = {}

    def connector_for(system: str) -> Connector:
        if system not in built:
            built[system] = build_connector(system, hub.settings, {s: [SECRET] for s in twins}, client,
                                            {s: TOKEN for s in twins})
        return built[system]

    w = World(hub, clock, twins, connector_for, config=config)
    crm = twins["crm"]
    for n, (name, phone) in enumerate([("Ada", "+44 20 7946 0001"), ("王小明", "+86 10 5555 0002"),
                                       ("Grace", "+1 555 0003"), ("Linus", "+358 9 0004")]):
        clock.now = T0 + timedelta(minutes=n)
        crm.create("agent@example.com", local_id=f"CASE-{n + 1}", **{
            "contact.name": name, "contact.phone": phone, "case.status": "New",
            "case.description": f"pump {n + 1} jams", "case.product": "PUMP-100", "case.serial_number": f"SN-{n}"})
        w.crm_change(f"CASE-{n + 1}")
    w.deliver_all()
    return w


def _items(report: RunReport, **match: object) -> list:  # type: ignore[type-arg]
    return [i for i in report.items if all(getattr(i, k) == v for k, v in match.items())]


def test_a_clean_hub_reconciles_to_nothing_but_the_systems_without_export(world: World) -> None:
    """After every write was delivered, a full run finds every copy equal; wms and courier are not checked."""
    report = world.run(full=True)
    assert report.run.state == "done" and report.run.mode == "full"
    assert report.items == []
    assert {nc.system: nc.reason for nc in report.not_checked}.keys() == {"wms", "courier"}
    assert all("export_url" in nc.reason for nc in report.not_checked)
    assert report.summary.tickets == 4 and report.summary.copies_compared == 12  # crm, erp, mes x 4


def test_known_drift_is_decided_repaired_and_reported_and_a_second_run_finds_nothing_to_do(world: World) -> None:
    """Each seeded discrepancy gets the expected decision and action; the repairs reach the twins; the next
    run leaves only the standing reports (orphan, deleted record)."""
    crm, erp, mes = world.twins["crm"], world.twins["erp"], world.twins["mes"]
    t = world.tickets
    erp_of = {ticket: local for local, ticket in _xrefs(world, "erp").items()}
    mes_of = {ticket: local for local, ticket in _xrefs(world, "mes").items()}
    world.clock.now = T0 + timedelta(hours=1)
    # 1. a missed webhook: the CRM's change never reached the hub
    crm.edit("CASE-1", "supervisor@example.com", **{"contact.name": "Ada Lovelace"})
    # 2. a non-owner edit: someone in the ERP retyped the customer's name
    erp.edit(erp_of[t["CASE-2"]], "accounting", **{"party.name": "王晓明"})
    # 3. two owners of the phone within the 2 s skew: the ERP's author outranks the CRM's
    world.clock.now = T0 + timedelta(hours=1, minutes=1)
    crm.edit("CASE-3", "agent@example.com", **{"contact.phone": "+1 555 0333"})
    world.clock.now += timedelta(seconds=1)
    erp.edit(erp_of[t["CASE-3"]], "admin", **{"party.phone": "+1 555 0999"})
    # 4. an orphan: an ERP order no ticket links
    erp.create("accounting", local_id="ERP-ORPHAN", **{"party.name": "Nobody"})
    # 5. a deleted record: the MES order of ticket 4 is gone
    mes.delete(mes_of[t["CASE-4"]])
    # 6. a copy held for review: the MES notes were edited on the shop floor
    mes.edit(mes_of[t["CASE-3"]], "shopfloor-lead", **{"production.notes": "pump 3 jams; impeller cracked"})

    report = world.run(full=True)
    assert report.run.state == "done"

    [missed] = _items(report, kind="missed_change", field="customer.name")
    assert (missed.ticket_id, missed.system, missed.rule, missed.action) == (t["CASE-1"], "crm", "newest", "repaired")
    assert missed.winner is not None and missed.winner.value == "Ada Lovelace"
    assert missed.winner.author == "supervisor@example.com" and "missed" in missed.reason

    [drift] = _items(report, kind="drift", ticket_id=t["CASE-2"])
    assert (drift.system, drift.field, drift.responsible, drift.action) == ("erp", "customer.name", "accounting",
                                                                             "repaired")
    assert drift.winner is not None and drift.winner.value == "王小明"
    assert {v.source for v in drift.values} >= {"golden", "crm", "erp"}

    phone = _items(report, ticket_id=t["CASE-3"], field="customer.phone")
    assert {(i.kind, i.system) for i in phone} == {("missed_change", "erp"), ("conflict", "crm")}
    assert all(i.rule == "author_rank" and i.winner and i.winner.value == "+1 555 0999" for i in phone)
    assert "admin in erp outranks agent@example.com in crm" in phone[0].reason

    [orphan] = _items(report, kind="orphan")
    assert (orphan.system, orphan.local_id, orphan.action, orphan.ticket_id) == ("erp", "ERP-ORPHAN", "reported", None)
    [gone] = _items(report, kind="dangling")
    assert (gone.ticket_id, gone.system, gone.action) == (t["CASE-4"], "mes", "reported")
    [review] = _items(report, awaiting_review=True)
    assert (review.ticket_id, review.system, review.field, review.kind) == (t["CASE-3"], "mes", "fault.description",
                                                                            "drift")
    assert report.summary.awaiting_review == 1 and report.summary.by_kind["drift"] == 2
    assert {nc.system for nc in report.not_checked} == {"wms", "courier"}

    # the golden record took the missed change and the ERP's phone, audited with the run as the event
    with world.hub.store.unit_of_work() as uow:
        one = uow.tickets.get(t["CASE-1"])
        history = uow.tickets.history(t["CASE-1"])
        three = uow.tickets.get(t["CASE-3"])
    assert one.fields["customer.name"].value == "Ada Lovelace"
    assert any(e.event_id == f"reconcile-run-{report.run.id}" and e.outcome == "applied" for e in history)
    assert three.fields["customer.phone"].value == "+1 555 0999"

    world.deliver_all()
    assert erp.value(erp_of[t["CASE-1"]], "party.name") == "Ada Lovelace"  # the missed change reached the ERP
    assert erp.value(erp_of[t["CASE-2"]], "party.name") == "王小明"  # drift repaired
    assert crm.value("CASE-3", "contact.phone") == "+1 555 0999"  # the losing owner written back
    assert mes.value(mes_of[t["CASE-3"]], "production.notes") == "pump 3 jams; impeller cracked"  # held

    again = world.run(full=True)
    to_do = [i for i in again.items if i.action in ("repaired", "would_repair")]
    assert to_do == []
    assert {i.kind for i in again.items} == {"orphan", "dangling", "drift"}  # standing reports, the held review
    assert again.trend[-1].run_id == report.run.id and again.trend[-1].discrepancies == len(report.items)


def test_a_dry_run_decides_the_same_and_changes_nothing(world: World) -> None:
    """--dry-run: the items say would_repair; the golden record, the outbox and the twins stay as they were."""
    world.clock.now = T0 + timedelta(hours=1)
    world.twins["crm"].edit("CASE-1", "supervisor@example.com", **{"contact.name": "Ada Lovelace"})
    report = world.run(full=True, dry_run=True)
    [missed] = _items(report, kind="missed_change")
    assert missed.action == "would_repair" and report.run.dry_run
    with world.hub.store.unit_of_work() as uow:
        assert uow.tickets.get(world.tickets["CASE-1"]).fields["customer.name"].value == "Ada"
        assert uow.tickets.pending_writes() == []


def test_a_system_whose_export_keeps_failing_is_not_checked_and_a_passing_hiccup_is_retried(world: World) -> None:
    """Two 503s are retried page by page and the run compares the ERP; an export that keeps failing leaves the
    ERP not checked, with nothing of it compared."""
    world.twins["erp"].failures = [503, 503]
    report = world.run(full=True)
    assert "erp" not in {nc.system for nc in report.not_checked} and report.summary.copies_compared == 12

    world.twins["erp"].failures = [503] * 10
    world.twins["erp"].edit(next(iter(world.twins["erp"].records)), "accounting", **{"party.name": "X"})
    report = world.run(full=True)
    [erp] = [nc for nc in report.not_checked if nc.system == "erp"]
    assert "could not be read" in erp.reason and "503" in erp.reason
    assert not _items(report, system="erp") and report.summary.copies_compared == 8


def test_an_incremental_run_compares_only_what_changed_since_the_last(world: World) -> None:
    """After a full run, the next run reads only records changed since and finds the one change."""
    world.run(full=True)
    world.clock.now += timedelta(hours=2)
    world.twins["crm"].edit("CASE-2", "agent@example.com", **{"case.description": "pump 2 leaks"})
    report = world.run()
    assert report.run.mode == "incremental" and report.run.since is not None
    assert report.summary.copies_compared == 1
    [missed] = report.items
    assert (missed.kind, missed.field, missed.winner.value if missed.winner else None) == (
        "missed_change", "fault.description", "pump 2 leaks")


def test_runs_never_overlap(world: World) -> None:
    """A second start while a run is going on is refused, naming the run; the CLI says so and exits non-zero.
    A run whose process stopped reporting (no heartbeat for ten minutes) no longer blocks the next."""
    with world.hub.store.unit_of_work() as uow:
        running = uow.reconcile.start("full", False, None, ["crm"], [], datetime.now(UTC))
        uow.commit()
    with pytest.raises(RunInProgress, match=f"run {running}"):
        world.run(full=True)
    result = CliRunner().invoke(_cli(), ["--config", str(world.config), "reconcile", "--full"],
                                env={"TICKETHUB_DATABASE_URL": world.hub.engine.url.render_as_string(False),
                                     "RECONCILE_SECRETS": SECRET})
    assert result.exit_code == 3 and "in progress" in result.output

    world.clock.now = datetime.now(UTC) + timedelta(minutes=11)
    report = world.run(full=True)
    assert report.run.state == "done"
    with world.hub.store.unit_of_work() as uow:
        abandoned = uow.reconcile.run(running)
    assert abandoned is not None and abandoned["state"] == "failed" and "abandoned" in abandoned["error"]


def test_reports_over_http_and_operator_decisions(world: World) -> None:
    """The runs, a run's JSON (schema-valid), CSV (BOM, Chinese intact) and HTML; a decision accepted once,
    then refused as already decided; unknown runs and items and a value the field refuses get 4xx."""
    mes_of = {ticket: local for local, ticket in _xrefs(world, "mes").items()}
    world.clock.now = T0 + timedelta(hours=1)
    world.twins["mes"].edit(mes_of[world.tickets["CASE-3"]], "shopfloor-lead", **{"production.notes": "cracked"})
    world.twins["erp"].edit(next(r for r, t in _xrefs(world, "erp").items() if t == world.tickets["CASE-2"]),
                            "accounting", **{"party.name": "王晓明"})
    report = world.run(full=True)
    api = TestClient(create_app(world.hub, "op-token", webhook_secrets={}))
    auth = {"Authorization": "Bearer op-token"}
    run_id = report.run.id

    assert api.get("/reconcile/runs").status_code == 401
    runs = api.get("/reconcile/runs", headers=auth).json()["runs"]
    assert runs[0]["id"] == run_id and runs[0]["discrepancies"] == 2 and runs[0]["awaiting_review"] == 1
    body = api.get(f"/reconcile/runs/{run_id}.json", headers=auth)
    assert body.headers["content-type"].startswith("application/json")
    parsed = RunReport.model_validate(body.json())
    assert parsed.run.id == run_id and len(parsed.items) == 2
    raw = api.get(f"/reconcile/runs/{run_id}.csv", headers=auth).content
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(raw[3:].decode("utf-8"))))
    assert len(rows) == 2 and any("王晓明" in r["values"] and r["winner"] == "王小明" for r in rows)
    html = api.get(f"/reconcile/runs/{run_id}.html", headers=auth).text
    assert "Awaiting review (1)" in html and "王小明" in html
    assert "<script" not in html and "<link" not in html and 'src="' not in html  # self-contained
    summary = api.get(f"/reconcile/runs/{run_id}", headers=auth).json()
    assert summary["summary"]["awaiting_review"] == 1 and summary["links"]["html"].endswith(".html")
    assert api.get("/reconcile/runs/999.json", headers=auth).status_code == 404

    [review] = [i for i in parsed.items if i.awaiting_review]
    decided = api.post(f"/reconcile/runs/{run_id}/decisions", headers=auth,
                       json={"item_id": review.id, "decision": "accept", "operator": "lin@ops"})
    assert decided.status_code == 200 and decided.json()["deliveries"]
    again = api.post(f"/reconcile/runs/{run_id}/decisions", headers=auth,
                     json={"item_id": review.id, "decision": "accept", "operator": "lin@ops"})
    assert again.status_code == 409 and "already decided" in again.json()["detail"]
    assert api.post(f"/reconcile/runs/{run_id}/decisions", headers=auth,
                    json={"item_id": 99999, "decision": "accept", "operator": "x"}).status_code == 404
    assert api.post("/reconcile/runs/999/decisions", headers=auth,
                    json={"item_id": review.id, "decision": "accept", "operator": "x"}).status_code == 404
    [drift] = [i for i in parsed.items if i.system == "erp"]
    refused = api.post(f"/reconcile/runs/{run_id}/decisions", headers=auth,
                       json={"item_id": drift.id, "decision": "override", "value": {"a": 1}, "operator": "lin"})
    assert refused.status_code == 422 and "customer.name" in refused.json()["detail"]
    nameless = api.post(f"/reconcile/runs/{run_id}/decisions", headers=auth,
                        json={"item_id": drift.id, "decision": "override", "value": "Wang", "operator": ""})
    assert nameless.status_code == 422  # who decides is kept in the history: it must be given

    world.deliver_all()
    assert world.twins["mes"].value(mes_of[world.tickets["CASE-3"]], "production.notes") == "pump 3 jams"
    report = load_report(world.hub, run_id)
    [accepted] = [i for i in report.items if i.id == review.id]
    assert accepted.action == "accepted" and accepted.decision and accepted.decision.operator == "lin@ops"
    assert not accepted.awaiting_review


def test_an_operator_overrides_a_flagged_value_and_every_subscriber_gets_it(world: World) -> None:
    """Override with a value: it becomes the golden value (audited with the operator) and is written to each
    system that is written the field, owners included; a value the field refuses is a 422."""
    world.clock.now = T0 + timedelta(hours=1)
    world.twins["erp"].edit(next(r for r, t in _xrefs(world, "erp").items() if t == world.tickets["CASE-1"]),
                            "accounting", **{"party.name": "Ada L."})
    report = world.run(full=True)
    [drift] = report.items
    api = TestClient(create_app(world.hub, "op-token", webhook_secrets={}))
    auth = {"Authorization": "Bearer op-token"}
    bad = api.post(f"/reconcile/runs/{report.run.id}/decisions", headers=auth,
                   json={"item_id": drift.id, "decision": "override", "value": ["not", "a", "name"], "operator": "x"})
    assert bad.status_code == 422
    result = CliRunner().invoke(_cli(), ["--config", str(world.config), "reconcile", "decide", str(report.run.id),
                                         str(drift.id), "--value", "Ada King", "--operator", "lin@ops"],
                                env={"TICKETHUB_DATABASE_URL": world.hub.engine.url.render_as_string(False),
                                     "RECONCILE_SECRETS": SECRET, "TICKETHUB_BROKER_URL": "memory://"})
    assert result.exit_code == 0, result.output
    with world.hub.store.unit_of_work() as uow:
        value = uow.tickets.get(world.tickets["CASE-1"]).fields["customer.name"]
    assert value.value == "Ada King" and value.provenance.author == "lin@ops"
    world.deliver_all()
    assert world.twins["crm"].value("CASE-1", "contact.name") == "Ada King"


def _xrefs(world: World, system: str) -> dict[str, str]:
    with world.hub.store.unit_of_work() as uow:
        return uow.tickets.xref_map(system, [r for r in world.twins[system].records])


def _cli():  # type: ignore[no-untyped-def]
    from hub.cli import app

    return app


def test_the_report_schema_is_published() -> None:
    """The JSON report's schema is the documented contract: every part a machine reads is in it."""
    schema = RunReport.model_json_schema(by_alias=True)
    assert schema["properties"]["schema"]["const"] == "tickethub.reconcile.run/1"
    for part in ("run", "summary", "not_checked", "items", "trend"):
        assert part in schema["properties"]
    item = schema["$defs"]["Item"]["properties"]
    assert {"values", "winner", "rule", "reason", "action", "awaiting_review", "responsible"} <= item.keys()
    json.dumps(schema)


def _many_items(count: int) -> list[dict[str, object]]:
    """Report items as a run stores them: every kind, Chinese text, values of every JSON type, some awaiting
    review, reasons over several lines."""
    kinds = ("drift", "conflict", "missed_change", "missing", "orphan", "dangling")
    found: list[dict[str, object]] = []
    for n in range(count):
        kind = kinds[n % len(kinds)]
        stamp = (T0 + timedelta(seconds=n)).isoformat()
        values = [{"source": "golden", "system": "crm", "value": f"王小明 {n}", "author": "agent@example.com",
                   "author_rank": 50, "system_rank": 100, "modified_at": stamp, "owner": True},
                  {"source": "erp", "system": "erp", "value": [n, {"金额": f"{n}.50"}] if n % 7 == 0 else n % 3 == 0,
                   "author": f"clerk-{n % 5}", "author_rank": 10, "system_rank": 50, "modified_at": None,
                   "owner": False}]
        item: dict[str, object] = {
            "ticket_id": None if kind == "orphan" else f"20261201-SVC-{n:05d}", "system": ("erp", "mes", None)[n % 3],
            "local_id": f"ERP-{n}" if n % 2 else None, "kind": kind, "field": None if kind in ("missing", "orphan")
            else ("customer.name", "customer.phone", "fault.description")[n % 3], "values": values,
            "reason": f"第{n}条: changed by clerk-{n % 5}\n(second line, \"quoted\", a comma)",
            "action": ("would_repair", "reported", "awaiting_review")[n % 3], "responsible": f"clerk-{n % 5}"}
        if n % 3 == 2:
            item["awaiting_review"] = True
        if n % 4 == 0:
            item.update(winner=values[0], rule="newest")
        found.append(item)
    return found


def _csv_as_before(report: RunReport) -> bytes:
    """The CSV as it was rendered from the whole document before reports were streamed."""
    def text(value: object) -> str:
        return "—" if value is None else value if isinstance(value, str) else orjson.dumps(value).decode()

    def when(moment: datetime | None) -> str:
        return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else "—"

    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for item in report.items:
        values = "; ".join(f"{v.source}={text(v.value)} ({v.author}, {when(v.modified_at)})" for v in item.values)
        writer.writerow([report.run.id, item.id, item.ticket_id or "", item.kind, item.system or "",
                         item.local_id or "", item.field or "", values,
                         text(item.winner.value) if item.winner else "", item.winner.source if item.winner else "",
                         item.rule, item.reason, item.action, "yes" if item.awaiting_review else "no",
                         item.responsible or ""])
    return b"\xef\xbb\xbf" + out.getvalue().encode("utf-8")


def test_a_run_with_thousands_of_items_writes_the_same_reports_read_from_the_store(world: World,
                                                                                   tmp_path: Path) -> None:
    """A run's report files are written from the store a page of items at a time: with several thousand
    items (some decided), the JSON is the whole document's (schema tickethub.reconcile.run/1), the CSV has the
    same columns and rows, the HTML lists every item, and the summary counts what the items say."""
    world.run(full=True)  # an earlier run, for the trend
    world.clock.now += timedelta(hours=1)
    run_id, _ = start_run(world.hub, ReconcileRequest(full=True, dry_run=True))
    with world.hub.store.unit_of_work() as uow:
        ids = uow.reconcile.add_items(run_id, [{"item": item, "proposal": None} for item in _many_items(3000)])
        for item_id in ids[5:3000:500]:
            stored = uow.reconcile.item(run_id, item_id)
            assert stored is not None
            uow.reconcile.decide(item_id, {**stored["item"], "action": "accepted", "awaiting_review": False},
                                 {"decision": "accept", "value": None, "operator": "lin@ops",
                                  "decided_at": world.clock.now.isoformat()})
        uow.commit()
    assert ids == sorted(ids) and len(set(ids)) == 3000
    outcome_report = finish_run(world.hub, run_id)

    whole = load_report(world.hub, run_id)
    assert len(whole.items) == 3000 and [i.id for i in whole.items] == ids
    assert sum(1 for i in whole.items if i.decision is not None) == 6
    counted = {"by_kind": Counter(i.kind for i in whole.items), "by_action": Counter(i.action for i in whole.items),
               "by_system": Counter(i.system or "(none)" for i in whole.items)}
    summary = outcome_report.summary
    assert summary.discrepancies == 3000 and summary.awaiting_review == sum(i.awaiting_review for i in whole.items)
    for name, counts in counted.items():
        assert getattr(summary, name) == dict(counts.most_common())
    assert whole.summary == summary and whole.trend and whole.trend[-1].run_id < run_id

    paths = write_reports(outcome_report, tmp_path / "reports")
    by_suffix = {p.suffix: p.read_bytes() for p in paths}
    # the JSON: byte for byte the whole document as it was dumped before reports were streamed
    assert by_suffix[".json"] == orjson.dumps(whole.model_dump(mode="json", by_alias=True),
                                              option=orjson.OPT_INDENT_2)
    parsed = RunReport.model_validate_json(by_suffix[".json"])
    assert parsed.schema_ == "tickethub.reconcile.run/1" and parsed == whole
    # the CSV: the same columns, one row per item, as before
    assert by_suffix[".csv"] == _csv_as_before(whole)
    rows = list(csv.DictReader(io.StringIO(by_suffix[".csv"][3:].decode("utf-8"))))
    assert len(rows) == 3000 and tuple(rows[0]) == CSV_COLUMNS and "王小明 0" in rows[0]["values"]
    # the HTML: what the whole document renders
    assert by_suffix[".html"] == to_html(whole)
    html = by_suffix[".html"].decode("utf-8")
    assert "Discrepancies (3000)" in html and f"Awaiting review ({summary.awaiting_review})" in html
    assert html.count('<tr class="review">') + html.count("<tr>\n<td>") >= 3000
    # and the same files from the whole document
    again = write_reports(whole, tmp_path / "whole")
    assert {p.suffix: p.read_bytes() for p in again} == by_suffix
