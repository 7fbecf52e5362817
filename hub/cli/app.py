"""The `tickethub` Typer app: its sub-commands' groups, the consoles, the global options, and the helpers every
command uses to read the configuration and bootstrap (failing with the problems listed, exit 2)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from hub.bootstrap import Hub, bootstrap
from hub.config import Settings, load_settings
from hub.core.errors import ConfigError, MappingError
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


def settings_from(ctx: typer.Context) -> Settings:
    try:
        return load_settings(ctx.obj["config"])
    except ConfigError as exc:
        fail("configuration is wrong", exc.problems)
        raise  # unreachable: _fail exits


def hub_from(ctx: typer.Context) -> Hub:
    try:
        return bootstrap(settings_from(ctx))
    except MappingError as exc:
        fail("mappings are wrong", exc.problems)
        raise


def fail(what: str, problems: Any) -> None:
    err.print(f"[bold red]tickethub: {what}[/]")
    for problem in problems:
        err.print(f"  - {problem}", markup=False, highlight=False)
    raise typer.Exit(2)


def since_option(text: str | None) -> datetime | None:
    """A `--since` value as an aware time (a time without a zone is UTC); exit 2 saying what is wrong."""
    if text is None:
        return None
    from datetime import UTC, datetime

    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))  # a date alone is its midnight
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except Exception as exc:
        err.print(f"[red]--since: {exc}[/]")
        raise typer.Exit(2) from exc
