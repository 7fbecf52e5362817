"""Commands that look after the hub: `db upgrade`, `mappings check`, `ticket show`, `dlq`, `demo`."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table

from hub.cli.app import (
    app,
    db_app,
    dlq_app,
    err,
    fail,
    hub_from,
    mappings_app,
    out,
    settings_from,
    since_option,
    ticket_app,
)
from hub.core.errors import InvalidTicketId, TicketNotFound
from hub.core.ticket_ids import parse_ticket_id
from hub.http.views import audit_json, delivery_json, ticket_json


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context) -> None:
    """Create the database, or migrate it to the newest schema."""
    from hub.store.engine import make_engine
    from hub.store.migrate import upgrade

    settings = settings_from(ctx)
    engine = make_engine(settings.hub.database_url)
    upgrade(engine)
    out.print(f"database at {engine.url.render_as_string(hide_password=True)} is up to date")


@mappings_app.command("check")
def mappings_check(ctx: typer.Context) -> None:
    """Validate configuration, mappings and the status workflow together; print the ownership matrix, the
    workflow and every problem."""
    from hub.mapping_files import check_mappings
    from hub.workflow_files import check_workflow

    settings = settings_from(ctx)
    from hub.plugins import connector_schemas

    mapping_set, problems = check_mappings(settings.hub.mappings_dir, settings.mapping_names(),
                                           connector_schemas(settings))
    path = settings.workflow_path()
    workflow = None
    if path is not None:
        workflow, found = check_workflow(path, list(settings.systems), settings.hub.clock_skew_seconds)
        problems += found
    if mapping_set is not None and not problems:
        table = Table(title=f"ownership ({settings.source}; mappings in {settings.hub.mappings_dir})")
        table.add_column("field")
        for system in mapping_set.systems:
            table.add_column(system)
        labels = {"owner+both": "OWNER rw", "owner+read": "OWNER r", "both": "rw", "read": "r", "write": "w", "": "·"}
        for name, row in mapping_set.matrix().items():
            table.add_row(name, *(labels[row[s]] for s in mapping_set.systems))
        out.print(table)
        out.print("OWNER: may change the field · r: the hub reads it there · w: the hub writes it there")
        if workflow is not None:
            flow = Table(title=f"status workflow ({workflow.source})")
            for column in ("state", "from", "reported by", "evidence", "dwell / escalate"):
                flow.add_column(column)
            for name, rule in workflow.states.items():
                limits = " / ".join(f"{s / 3600:g} h" for s in (rule.dwell_seconds, rule.escalate_seconds) if s)
                flow.add_row(name + (" (final)" if rule.terminal else ""), ", ".join(rule.sources) or "(initial)",
                             ", ".join(rule.by) or "·", "; ".join(e.describe() for e in rule.evidence) or "·",
                             limits or "·")
            out.print(flow)
        else:
            out.print("no status workflow: status is a plain owned field")
        out.print("[green]no problems[/]")
        return
    fail(f"{len(problems)} problem(s) in the mappings", problems)


@ticket_app.command("show")
def ticket_show(ctx: typer.Context, ticket_id: str,
                history: Annotated[bool, typer.Option("--history", help="also print the audit trail")] = False,
                as_json: Annotated[bool, typer.Option("--json", help="print JSON, as the HTTP API does")] = False,
                ) -> None:
    """Print a ticket's golden record with provenance, its cross-references and (optionally) history."""
    try:
        parse_ticket_id(ticket_id)
    except InvalidTicketId as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from exc
    hub = hub_from(ctx)
    try:
        with hub.store.unit_of_work() as uow:
            view = uow.tickets.get(ticket_id)
            entries = uow.tickets.history(ticket_id) if history else []
    except TicketNotFound as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from exc
    data = ticket_json(view)
    if as_json:
        if history:
            data["history"] = [audit_json(e) for e in entries]
        out.print_json(json.dumps(data))
        return
    print_ticket(data)
    if history:
        print_history([audit_json(e) for e in entries])


def print_ticket(data: dict[str, Any]) -> None:
    links = ", ".join(f"{x['system']}:{x['local_id']}" for x in data["xrefs"]) or "none"
    table = Table(title=f"{data['ticket_id']}  status: {data['status'] or '-'}  linked: {links}")
    for column in ("field", "value", "source", "author (rank)", "modified at", "event"):
        table.add_column(column)
    for name, fv in data["fields"].items():
        p = fv["provenance"]
        table.add_row(name, json.dumps(fv["value"]), p["system"], f"{p['author']} ({p['author_rank']})",
                      p["modified_at"], p["event_id"])
    out.print(table)


def print_history(entries: list[dict[str, Any]]) -> None:
    table = Table(title="history (oldest first)")
    for column in ("#", "field", "outcome", "old → new", "system", "author", "modified at", "why"):
        table.add_column(column)
    for e in entries:
        outcome = e["outcome"] + (f" → {e['target_system']}" if e["target_system"] else "")
        table.add_row(str(e["id"]), e["field"], outcome, f"{json.dumps(e['old_value'])} → {json.dumps(e['new_value'])}",
                      e["system"], e["author"], e["source_modified_at"], e["reason"])
    out.print(table)


@dlq_app.command("list")
def dlq_list(ctx: typer.Context, system: Annotated[str | None, typer.Option(help="only this system")] = None,
             since: Annotated[str | None, typer.Option(help="ISO date-time: dead-lettered since")] = None,
             as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List dead-lettered deliveries with their last error."""
    hub = hub_from(ctx)
    with hub.store.unit_of_work() as uow:
        rows = uow.deliveries.find("dead", system, since_option(since), limit=1000)
    data = [delivery_json(r) for r in rows]
    if as_json:
        out.print_json(json.dumps(data))
        return
    table = Table(title=f"dead letters: {len(data)}")
    for column in ("id", "ticket", "system", "attempts", "status", "error", "fields", "updated"):
        table.add_column(column)
    for d in data:
        table.add_row(str(d["id"]), d["ticket_id"], d["system"], str(d["attempts"]), str(d["last_status"]),
                      (d["last_error"] or "")[:80], ", ".join(d["fields"]), d["updated_at"])
    out.print(table)


@dlq_app.command("replay")
def dlq_replay(ctx: typer.Context, ids: Annotated[list[int] | None, typer.Argument(help="delivery IDs")] = None,
               system: Annotated[str | None, typer.Option(help="every dead letter of this system")] = None,
               since: Annotated[str | None, typer.Option(help="ISO date-time: dead-lettered since")] = None,
               all_: Annotated[bool, typer.Option("--all", help="every dead letter")] = False) -> None:
    """Replay dead-lettered deliveries (by ID, or all of a system / since a time)."""
    from hub.bootstrap import start_runtime
    from hub.usecases.replay import replay_delivery

    hub = hub_from(ctx)
    if not ids and not (system or since or all_):
        err.print("[red]name delivery IDs, or --system / --since / --all[/]")
        raise typer.Exit(2)
    with hub.store.unit_of_work() as uow:
        targets = ids or [r["id"] for r in uow.deliveries.find("dead", system, since_option(since), limit=100000)]
    runtime = start_runtime(hub)
    replayed = 0
    for delivery_id in targets:
        try:
            created = replay_delivery(hub, delivery_id)
        except LookupError as exc:
            err.print(f"[yellow]{exc}[/]")
            continue
        runtime.publish_deliveries(created)
        replayed += 1
    out.print(f"replayed {replayed} dead letter(s)")


console_app = typer.Typer(no_args_is_help=True, help="The operator console under /console.")
app.add_typer(console_app, name="console")


@console_app.command("hash-password")
def console_hash_password(
        password: Annotated[str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True,
                                              help="asked for when not given")]) -> None:
    """Print a password hash for a [console.users.<name>] password_hash (PBKDF2-SHA256, salted)."""
    from hub.http.console.auth import hash_password

    typer.echo(hash_password(password))


@app.command("stats")
def stats(ctx: typer.Context,
          since: Annotated[str | None, typer.Option(help="from this time (ISO 8601; default: 24 hours ago)")] = None,
          as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """Service metrics: flow time across systems, time in each state, status changes accepted and refused,
    dwell breaches, first-attempt delivery success (README "Service metrics")."""
    from hub.usecases.stats import service_stats

    report = service_stats(hub_from(ctx), since_option(since))
    if as_json:
        out.print_json(json.dumps(report.as_json(), ensure_ascii=False))
        return
    out.print(f"[bold]service metrics[/] {report.since.isoformat()} .. {report.until.isoformat()}")
    flow = report.flow_seconds
    out.print(f"flow time (created -> in every written system): {flow.count} tickets, p50 {_secs(flow.p50)}, "
              f"p95 {_secs(flow.p95)}; {report.flow_waiting} still waiting for a system")
    table = Table(title="time in each state")
    for column in ("state", "stays", "p50", "p95"):
        table.add_column(column)
    for state, spread in report.state_seconds.items():
        table.add_row(state, str(spread.count), _secs(spread.p50), _secs(spread.p95))
    out.print(table)
    share = "n/a" if report.evidence_share is None else f"{report.evidence_share:.1%}"
    out.print(f"status changes accepted: {report.status_accepted}; with the evidence they needed: {share}")
    refused = Table(title="status changes refused")
    for column in ("reason", "system", "count"):
        refused.add_column(column)
    for reason, systems in sorted(report.status_refused.items()):
        for system, count in sorted(systems.items()):
            refused.add_row(reason, system, str(count))
    out.print(refused)
    for kind, states in sorted(report.dwell_breaches.items()):
        out.print(f"{kind}: " + ", ".join(f"{state} {count}" for state, count in sorted(states.items())))
    firsts = Table(title="first-attempt delivery success")
    for column in ("system", "first attempts", "delivered"):
        firsts.add_column(column)
    for system, total in sorted(report.first_attempts.items()):
        firsts.add_row(system, str(total), f"{report.first_attempt_success.get(system, 0):.1%}")
    out.print(firsts)


def _secs(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.1f} s" if value < 120 else f"{value / 60:.1f} min" if value < 7200 else f"{value / 3600:.1f} h"
