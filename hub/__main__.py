"""`python -m hub` is the `tickethub` command."""

from hub.cli import app

app()
