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
from hub.core.errors import ConfigError, InvalidTicketId, MappingError, TicketNotFound
from hub.core.ticket_ids import parse_ticket_id
from hub.http.views import audit_json, delivery_json, ticket_json
from hub.logs import configure_logging

app = typer.Typer(no_args_is_help=True, add_completion=False, help="tickethub: one service ticket across systems.")
db_app = typer.Typer(no_args_is_help=True, help="Database schema.")
mappings_app = typer.Typer(no_args_is_help=True, help="Mapping files and ownership.")
ticket_app = typer.Typer(no_args_is_help=True, help="Look at tickets.")
dlq_app = typer.Typer(no_args_is_help=True, help="Dead-lettered deliveries: inspect and replay.")
app.add_typer(db_app, name="db")
app.add_typer(dlq_app, name="dlq")
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
    from hub.mapping_files import check_mappings

    settings = _settings(ctx)
    from hub.plugins import connector_schemas

    mapping_set, problems = check_mappings(settings.hub.mappings_dir, settings.mapping_names(),
                                           connector_schemas(settings))
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
def api(ctx: typer.Context, host: str = "127.0.0.1", port: int = 8000,
        relay: Annotated[bool, typer.Option(help="publish accepted events to the workers")] = True) -> None:
    """Serve the HTTP API (webhook intake, tickets, deliveries, health, metrics)."""
    hub = _hub(ctx)
    token = hub.settings.api_token()
    if not token:
        err.print(f"[red]tickethub api: set the bearer token in ${hub.settings.hub.api_token_env} "
                  "(the variable named by [hub] api_token_env)[/]")
        raise typer.Exit(2)
    _serve(hub, token, host, port, relay)


def _require_current_schema(hub: Hub) -> None:
    from hub.store.migrate import is_current

    if not is_current(hub.engine):
        err.print("[red]the database is missing or behind: run `tickethub db upgrade` first[/]")
        raise typer.Exit(2)


def _serve(hub: Hub, token: str, host: str, port: int, relay: bool = False) -> None:
    import uvicorn

    from hub.bootstrap import start_runtime
    from hub.http.app import create_app
    from hub.messaging.relay import Relay

    _require_current_schema(hub)
    relay_thread = None
    if relay:
        runtime = start_runtime(hub)
        relay_thread = Relay(hub, runtime.publish_events, hub.settings.delivery.relay_interval_seconds)
        hub.on_accept.append(relay_thread.notify)
        relay_thread.start()
    try:
        if relay:
            from hub.http.ops import celery_broker_check

            app_ = create_app(hub, token, runtime.secrets, runtime.publish_deliveries, celery_broker_check)
        else:
            app_ = create_app(hub, token)
        uvicorn.run(app_, host=host, port=port, log_level="warning")
    finally:
        if relay_thread:
            relay_thread.stop()


@app.command("worker")
def worker(ctx: typer.Context,
           queues: Annotated[str, typer.Option(help="events, deliveries, or both")] = "events,deliveries",
           concurrency: Annotated[int, typer.Option(help="threads")] = 16,
           prefetch: Annotated[int, typer.Option(help="messages reserved per thread")] = 1,
           metrics_port: Annotated[int | None, typer.Option(help="serve this worker's /metrics")] = None,
           ) -> None:
    """Run a Celery worker: processes events and delivers writes (threads; HTTP waits do not block it)."""
    from hub.bootstrap import start_runtime

    hub = _hub(ctx)
    _require_current_schema(hub)
    runtime = start_runtime(hub)
    if metrics_port:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, addr="127.0.0.1")
    from hub.messaging.celery_app import QUEUES, celery_app, queue_name

    logical = [q.strip() for q in queues.split(",") if q.strip()]
    unknown = sorted(set(logical) - set(QUEUES))
    if unknown or not logical:
        err.print(f"[red]--queues takes {' and/or '.join(QUEUES)}, not {', '.join(unknown) or 'nothing'}[/]")
        raise typer.Exit(2)
    name = "-".join(logical)
    celery_app.worker_main([
        "worker", "--pool", "threads", "--concurrency", str(concurrency),
        "--queues", ",".join(queue_name(hub.settings, q) for q in logical),
        "--prefetch-multiplier", str(prefetch), "--without-gossip", "--without-mingle", "--without-heartbeat",
        "--hostname", f"tickethub-{name}-{os.getpid()}@%h", "--loglevel", "WARNING",
    ])
    runtime.close()


@app.command("beat")
def beat(ctx: typer.Context) -> None:
    """Run the scheduler (the sweeper that re-publishes lost work; later, nightly reconciliation)."""
    from hub.messaging.celery_app import configure_celery

    hub = _hub(ctx)
    app_ = configure_celery(hub.settings)
    hub.settings.hub.data_dir.mkdir(parents=True, exist_ok=True)
    app_.start(["beat", "--schedule", str(hub.settings.hub.data_dir / "celerybeat-schedule"),
                "--loglevel", "WARNING"])


def default_event_threads(dialect: str) -> int:
    """On SQLite one thread: writes take turns anyway, and with four the thread holding the write lock
    waited for the interpreter behind the others (bench/pipeline.py's acknowledgement run, 500/s with the
    events worker busy, two runs each: p99 130-142 ms with 4 threads, 40-45 ms with 1, no slower). More
    help where each notice is read from its system over HTTP (BottleCRM, Tryton): `--event-threads`."""
    return 1 if dialect == "sqlite" else 4


@app.command("up")
def up(ctx: typer.Context, host: str = "127.0.0.1", port: int = 8000,
       concurrency: Annotated[int, typer.Option(help="delivery threads")] = 128,
       event_threads: Annotated[int | None, typer.Option(
           help="event-processing threads; default 1 on SQLite, 4 otherwise (see README)")] = None) -> None:
    """API + workers + scheduler in one command, on the embedded default or whatever is configured."""
    import shutil

    from hub.cli.supervisor import Child, Supervisor, tickethub_argv
    from hub.store.migrate import upgrade

    hub = _hub(ctx)
    upgrade(hub.engine)
    data_dir = hub.settings.hub.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if ctx.obj["config"]:
        env["TICKETHUB_CONFIG"] = str(Path(ctx.obj["config"]).resolve())
    token_var = hub.settings.hub.api_token_env
    if not env.get(token_var):
        token_file = data_dir / "api-token"
        if not token_file.exists():
            token_file.write_text(secrets.token_urlsafe(32))
            token_file.chmod(0o600)
        env[token_var] = token_file.read_text().strip()
        out.print(f"API token (from ${token_var}, or else kept in {token_file}): read it from that file")
    metrics_dir = data_dir / "metrics"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir.resolve())
    out.print(f"tickethub up: API on http://{host}:{port}, database {hub.engine.url.render_as_string()}, "
              f"broker {hub.settings.hub.broker_url or 'embedded (' + str(data_dir / 'broker') + ')'}")
    children = [
        Child("api", tickethub_argv("api", "--host", host, "--port", str(port))),
        Child("worker-events", tickethub_argv("worker", "--queues", "events", "--concurrency",
                                              str(event_threads or default_event_threads(hub.engine.dialect.name)),
                                              "--prefetch", "8")),
        Child("worker-deliveries", tickethub_argv("worker", "--queues", "deliveries", "--concurrency",
                                                  str(concurrency), "--prefetch", "1")),
        Child("beat", tickethub_argv("beat")),
    ]
    raise typer.Exit(Supervisor(children, env).run())


@dlq_app.command("list")
def dlq_list(ctx: typer.Context, system: Annotated[str | None, typer.Option(help="only this system")] = None,
             since: Annotated[str | None, typer.Option(help="ISO date-time: dead-lettered since")] = None,
             as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List dead-lettered deliveries with their last error."""
    hub = _hub(ctx)
    with hub.store.unit_of_work() as uow:
        rows = uow.deliveries.find("dead", system, _since(since), limit=1000)
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

    hub = _hub(ctx)
    if not ids and not (system or since or all_):
        err.print("[red]name delivery IDs, or --system / --since / --all[/]")
        raise typer.Exit(2)
    with hub.store.unit_of_work() as uow:
        targets = ids or [r["id"] for r in uow.deliveries.find("dead", system, _since(since), limit=100000)]
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


def _since(text: str | None) -> Any:
    if text is None:
        return None
    from hub.core.canonical import parse_datetime

    try:
        return parse_datetime(text if ("T" not in text or text[-1] == "Z" or "+" in text) else text + "Z")
    except Exception as exc:
        err.print(f"[red]--since: {exc}[/]")
        raise typer.Exit(2) from exc


@app.command("demo")
def demo(ctx: typer.Context,
         serve: Annotated[bool, typer.Option(help="serve the API after loading the sample")] = True,
         host: str = "127.0.0.1", port: int = 8000) -> None:
    """Create the embedded database, play a sample ticket's life through the hub, show it, serve the API."""
    from hub.cli.demo import run_demo
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
