"""The one place that wires real pieces together: configuration, mappings, database."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Engine

from hub.config import Settings
from hub.core.mapping import MappingSet
from hub.store.engine import make_engine
from hub.store.repository import Store
from mappings.loader import load_mappings


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

    @property
    def engine(self) -> Engine:
        return self.store.engine


def bootstrap(settings: Settings, *, engine: Engine | None = None,
              clock: Callable[[], datetime] = utc_now) -> Hub:
    """Load and check the mappings, and open (not migrate) the database."""
    from connectors.registry import connector_schemas

    mapping_set = load_mappings(settings.hub.mappings_dir, settings.mapping_names(), connector_schemas(settings))
    return Hub(settings, mapping_set, Store(engine or make_engine(
        settings.hub.database_url, pool_size=settings.hub.database_pool_size,
        max_overflow=settings.hub.database_max_overflow)), clock)
