"""The `tickethub` command line (Typer). Thin: parse options, bootstrap, call services, print."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from hub.bootstrap import Hub, bootstrap
from hub.config import Settings, load_settings
from hub.errors import ConfigError, InvalidTicketId, MappingError, TicketNotFound
from hub.logs import configure_logging
from hub.ticket_ids import parse_ticket_id
from hub.views import audit_json, ticket_json

app = typer.Typer(no_args_is_help=True, add_completion=False, help="tickethub: one service ticket across systems.")
db_app = typer.Typer(no_args_is_help=True, help="Database schema.")
mappings_app = typer.Typer(no_args_is_help=True, help="Mapping files and ownership.")
ticket_app = typer.Typer(no_args_is_help=True, help="Look at tickets.")
app.add_typer(db_app, name="db")
app.add_typer(mappings_app, name="mappings")
app.add_typer(ticket_app, name="ticket")

out = Console()
err = Console(stderr=True)

ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="tickethub.toml (default: $TICKETHUB_CONFIG or ./tickethub.toml)")
]


@app.callback()
def main(ctx: typer.Context, config: ConfigOption = None,
         log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING")] = "WARNING") -> None:
    configure_logging(log_level.upper())
    ctx.obj = {"config": config}


def _settings(ctx: typer.Context) -> Settings:
    try:
        return load_settings(ctx.obj["config"])
    except ConfigError as exc:
        _fail("configuration is wrong", exc.problems)
        raise  # unreachable: _fail exits


def _hub(ctx: typer.Context) -> Hub:
    try:
        return bootstrap(_settings(ctx))
    except MappingError as exc:
        _fail("mappings are wrong", exc.problems)
        raise


def _fail(what: str, problems: Any) -> None:
    err.print(f"[bold red]tickethub: {what}[/]")
    for problem in problems:
        err.print(f"  - {problem}", markup=False, highlight=False)
    raise typer.Exit(2)


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context) -> None:
    """Create the database, or migrate it to the newest schema."""
    from hub.store.engine import make_engine
    from hub.store.migrate import upgrade

    settings = _settings(ctx)
    engine = make_engine(settings.hub.database_url)
    upgrade(engine)
    out.print(f"database at {engine.url.render_as_string(hide_password=True)} is up to date")


@mappings_app.command("check")
def mappings_check(ctx: typer.Context) -> None:
    """Validate configuration and mappings together; print the ownership matrix and every problem."""
    from mappings.loader import check_mappings

    settings = _settings(ctx)
    mapping_set, problems = check_mappings(settings.hub.mappings_dir, settings.mapping_names())
    if mapping_set is not None:
        table = Table(title=f"ownership ({settings.source}; mappings in {settings.hub.mappings_dir})")
        table.add_column("field")
        for system in mapping_set.systems:
            table.add_column(system)
        labels = {"owner+both": "OWNER rw", "owner+read": "OWNER r", "both": "rw", "read": "r", "write": "w", "": "·"}
        for name, row in mapping_set.matrix().items():
            table.add_row(name, *(labels[row[s]] for s in mapping_set.systems))
        out.print(table)
        out.print("OWNER: may change the field · r: the hub reads it there · w: the hub writes it there")
        out.print("[green]no problems[/]")
        return
    _fail(f"{len(problems)} problem(s) in the mappings", problems)


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
    hub = _hub(ctx)
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


@app.command("api")
def api(ctx: typer.Context, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve the HTTP API."""
    hub = _hub(ctx)
    token = hub.settings.api_token()
    if not token:
        err.print(f"[red]tickethub api: set the bearer token in ${hub.settings.hub.api_token_env} "
                  "(the variable named by [hub] api_token_env)[/]")
        raise typer.Exit(2)
    _serve(hub, token, host, port)


def _serve(hub: Hub, token: str, host: str, port: int) -> None:
    import uvicorn

    from hub.api import create_app
    from hub.store.migrate import is_current

    if not is_current(hub.engine):
        err.print("[red]the database is missing or behind: run `tickethub db upgrade` first[/]")
        raise typer.Exit(2)
    uvicorn.run(create_app(hub, token), host=host, port=port, log_level="warning")


@app.command("demo")
def demo(ctx: typer.Context,
         serve: Annotated[bool, typer.Option(help="serve the API after loading the sample")] = True,
         host: str = "127.0.0.1", port: int = 8000) -> None:
    """Create the embedded database, play a sample ticket's life through the hub, show it, serve the API."""
    from hub.demo import run_demo
    from hub.store.migrate import upgrade

    hub = _hub(ctx)
    upgrade(hub.engine)
    ticket_id = run_demo(hub, out)
    with hub.store.unit_of_work() as uow:
        data = ticket_json(uow.tickets.get(ticket_id))
        entries = [audit_json(e) for e in uow.tickets.history(ticket_id)]
        pending = uow.tickets.pending_writes()
    print_ticket(data)
    print_history(entries)
    out.print(f"outbox: {len(pending)} pending write(s) to "
              f"{', '.join(sorted({p['system'] for p in pending if p['ticket_id'] == ticket_id})) or 'nobody'}")
    if not serve:
        return
    token = hub.settings.api_token() or secrets.token_urlsafe(24)
    os.environ.setdefault(hub.settings.hub.api_token_env, token)
    base = f"http://{host}:{port}"
    out.print(f"\nserving the API on {base} (Ctrl-C stops). Try:\n"
              f"  curl -H 'Authorization: Bearer {token}' {base}/tickets/{ticket_id}\n"
              f"  curl -H 'Authorization: Bearer {token}' {base}/tickets/{ticket_id}/history\n"
              f"  curl -H 'Authorization: Bearer {token}' '{base}/tickets?system=crm&local_id=CASE-1001'\n"
              f"  open {base}/docs")
    _serve(hub, token, host, port)
