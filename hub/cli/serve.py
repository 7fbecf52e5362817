"""Commands that run the hub: `api`, `worker`, `beat`, and `up` (all of them, supervised)."""

from __future__ import annotations

import gc
import os
import secrets
from pathlib import Path
from typing import Annotated

import typer

from hub.bootstrap import Hub
from hub.cli.app import app, err, hub_from, out


@app.command("api")
def api(ctx: typer.Context, host: str = "127.0.0.1", port: int = 8000,
        relay: Annotated[bool, typer.Option(help="publish accepted events to the workers")] = True) -> None:
    """Serve the HTTP API (webhook intake, tickets, deliveries, health, metrics)."""
    hub = hub_from(ctx)
    token = hub.settings.api_token()
    if not token:
        err.print(f"[red]tickethub api: set the bearer token in ${hub.settings.hub.api_token_env} "
                  "(the variable named by [hub] api_token_env)[/]")
        raise typer.Exit(2)
    serve_api(hub, token, host, port, relay)


def _wait_for_database(hub: Hub) -> None:
    """Wait (with back-off, a line when it goes and one when it is back) while the database is away: a process
    started during a database restart waits for it rather than exiting. A wrong URL or credentials exit."""
    import structlog

    from hub.store.engine import wait_for_database

    say = structlog.get_logger("tickethub.start").warning
    try:
        wait_for_database(hub.engine, lambda text: say(text))
    except Exception as exc:  # noqa: BLE001 (a configuration error: said once, with the fix)
        from hub.store.engine import reason

        err.print(f"[red]the database at {hub.engine.url.render_as_string()} refuses us: {reason(exc)}; check "
                  "[hub] database_url (or $TICKETHUB_DATABASE_URL) and the database's users[/]")
        raise typer.Exit(2) from None


def _require_current_schema(hub: Hub) -> None:
    from hub.store.migrate import is_current

    _wait_for_database(hub)
    if not is_current(hub.engine):
        err.print("[red]the database is missing or behind: run `tickethub db upgrade` first[/]")
        raise typer.Exit(2)


def settle_heap() -> None:
    """Once a process has started: what start-up built (modules, the app, the hub) moved out of the collector's way.
    Python's full collections walk every object still alive, and the API's first full one after start-up, in the
    first burst of webhooks, held every answer up (bench/pipeline.py's acknowledgement run at 500/s, PostgreSQL,
    the first burst's p99: 118-150 ms, 13-127 ms with this alone, 6-40 ms with this and the intake's own threads)."""
    gc.collect()
    gc.freeze()


def serve_api(hub: Hub, token: str, host: str, port: int, relay: bool = False) -> None:
    import uvicorn

    from hub.bootstrap import start_runtime
    from hub.http.app import create_app
    from hub.http.webhooks import start_store_threads
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
        start_store_threads()
        settle_heap()
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

    hub = hub_from(ctx)
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
    heartbeat = None
    if "deliveries" in logical:  # it claims deliveries: it says it is alive, and takes back what the dead held
        from hub.usecases.liveness import Heartbeat, take_back_from_dead

        heartbeat = Heartbeat(hub, runtime.identity)
        heartbeat.start()
        runtime.publish_deliveries(take_back_from_dead(hub, runtime.identity))
    from celery.signals import worker_ready

    worker_ready.connect(lambda **_: settle_heap(), weak=False)  # once the consumer is up, before the first task
    celery_app.worker_main([
        "worker", "--pool", "threads", "--concurrency", str(concurrency),
        "--queues", ",".join(queue_name(hub.settings, q) for q in logical),
        "--prefetch-multiplier", str(prefetch), "--without-gossip", "--without-mingle", "--without-heartbeat",
        "--hostname", f"tickethub-{name}-{os.getpid()}@%h", "--loglevel", "WARNING",
    ])
    if heartbeat is not None:
        heartbeat.stop()
    runtime.close()


@app.command("beat")
def beat(ctx: typer.Context) -> None:
    """Run the scheduler: the sweeper that re-publishes lost work, the polls, the nightly reconciliation."""
    from hub.messaging.celery_app import configure_celery

    hub = hub_from(ctx)
    app_ = configure_celery(hub.settings)
    hub.settings.hub.data_dir.mkdir(parents=True, exist_ok=True)
    app_.start(["beat", "--schedule", str(hub.settings.hub.data_dir / "celerybeat-schedule"),
                "--loglevel", "WARNING"])


def default_event_threads(dialect: str) -> int:
    """On SQLite one thread: writes take turns anyway, and with four the thread holding the write lock
    waited for the interpreter behind the others (bench/pipeline.py's acknowledgement run, 500/s with the
    events worker busy, two runs each: p99 130-142 ms with 4 threads, 40-45 ms with 1, no slower). On
    PostgreSQL a thread waits for the database through most of a set's statements: draining a backlog of new
    tickets (five subscribers), one worker did 1,195-1,314 events/s with 4 threads, 1,345-1,540 with 8, 1,536
    with 16. More help where each notice is read from its system over HTTP (BottleCRM, Tryton):
    `--event-threads`."""
    return 1 if dialect == "sqlite" else 8


@app.command("up")
def up(ctx: typer.Context, host: str = "127.0.0.1", port: int = 8000,
       concurrency: Annotated[int, typer.Option(help="delivery threads")] = 128,
       event_threads: Annotated[int | None, typer.Option(
           help="event-processing threads; default 1 on SQLite, 4 otherwise (see README)")] = None) -> None:
    """API + workers + scheduler in one command, on the embedded default or whatever is configured."""
    import shutil

    from hub.cli.supervisor import Child, Supervisor, tickethub_argv
    from hub.store.migrate import upgrade

    hub = hub_from(ctx)
    _wait_for_database(hub)
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
