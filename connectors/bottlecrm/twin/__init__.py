"""BottleCRM's sandbox twin: an emulator of its API for tests, benches and the demo (never production code).
`BottleCRMTwin` is the state (`state`) with its HTTP face (`http`); the contract suite proves both against the
real system.
"""

from __future__ import annotations

from typing import Any

from connectors.bottlecrm.twin.http import build_app
from connectors.bottlecrm.twin.state import *  # noqa: F403 (the twin's public names)
from connectors.bottlecrm.twin.state import BottleCRMState


class BottleCRMTwin(BottleCRMState):
    """The twin as tests use it: `app` serves the state over HTTP."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.app = build_app(self)
