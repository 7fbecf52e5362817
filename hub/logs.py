"""Structured logging: JSON lines through structlog, with secrets scrubbed before they are rendered."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_SECRET_KEYS = re.compile(r"(secret|token|password|signature|authorization|credential|api_key)", re.I)


def scrub_secrets(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Replace the value of any key that names a secret; the key stays, so the line still says what."""
    for key in list(event):
        if key != "event" and _SECRET_KEYS.search(key):
            event[key] = "***"
    return event


def _stderr_logger(*_args: Any) -> structlog.PrintLogger:
    # looked up at each call, not at configure time: stderr may be swapped (test runners, daemons)
    return structlog.PrintLogger(sys.stderr)


def configure_logging(level: str = "INFO", json: bool = True) -> None:
    renderer: Any = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            scrub_secrets,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )


