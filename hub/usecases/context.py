"""What every use case works with: the configuration, the mappings, the store and the clock.

Built once per process by `hub.bootstrap`; a use case takes it as its first argument.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Engine

from hub.config import Settings
from hub.core.mapping import MappingSet
from hub.core.retry import RetryPolicy
from hub.core.workflow import Workflow
from hub.store.unit_of_work import Store

T = TypeVar("T")


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Hub:
    settings: Settings
    mappings: MappingSet
    store: Store
    clock: Callable[[], datetime] = utc_now
    # called with the event id after an event is durably accepted; a listener (the relay) publishes it, so
    # the event is stored as dispatched (the sweeper publishes it again if that publish never happens)
    on_accept: list[Callable[[str], None]] = field(default_factory=list)
    workflow: Workflow | None = None  # the status workflow; None: status is a plain owned field
    # what this process's threads share, by name: combiners of their concurrent calls (`hub.store.combine`), the
    # ticket IDs reserved for it (`hub.usecases.ticket_ids`); not carried over by dataclasses.replace
    per_process: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def engine(self) -> Engine:
        return self.store.engine

    def shared(self, name: str, make: Callable[[], T]) -> T:
        """This process's one `name` (see `per_process`), made by `make` on first use."""
        found = self.per_process.get(name)
        return found if found is not None else self.per_process.setdefault(name, make())  # type: ignore[no-any-return]


def retry_policy(hub: Hub) -> RetryPolicy:
    """The back-off every retried write follows (deliveries and alert sends): [delivery] settings."""
    d = hub.settings.delivery
    return RetryPolicy(d.backoff_base_seconds, d.backoff_cap_seconds, d.retry_horizon_seconds)
