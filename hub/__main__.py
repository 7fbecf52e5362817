"""`python -m hub` is the `tickethub` command."""

from hub.cli.main import app

app()
