"""Entrypoint: the `tickethub` command line (Typer)."""
from hub.cli.main import app

__all__ = ["app"]
