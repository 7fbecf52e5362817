"""Entrypoint: the `tickethub` command line (Typer). Thin: parse options, bootstrap, call a use case, print."""

from importlib.metadata import entry_points

from hub.cli import manage, reconcile, serve  # noqa: F401 (they register their commands on the app)
from hub.cli.app import app

COMMANDS_GROUP = "tickethub.commands"


def _plug_in_commands() -> None:
    """Commands other installed packages add (`tickethub demo` is one): each entry point of the group is a
    function Typer registers under the entry point's name. A name the hub already uses is not replaced."""
    taken = {c.name for c in app.registered_commands} | {g.name for g in app.registered_groups}
    for entry in entry_points(group=COMMANDS_GROUP):
        if entry.name not in taken:
            app.command(entry.name)(entry.load())


_plug_in_commands()

__all__ = ["app"]
