"""Entrypoint: the `tickethub` command line (Typer). Thin: parse options, bootstrap, call a use case, print."""

from hub.cli import manage, reconcile, serve  # noqa: F401 (they register their commands on the app)
from hub.cli.app import app

__all__ = ["app"]
