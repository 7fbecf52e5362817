"""The connector types installed: every `tickethub.connectors` entry point, loaded once per process.

In-tree types (generic, bottlecrm, tryton) register themselves in pyproject.toml exactly as a third party's
package would; the hub imports none of them by name.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from importlib.metadata import entry_points
from types import MappingProxyType

from hub.core.errors import TickethubError
from hub.core.plugin import ENTRY_POINT_GROUP, ConnectorType

_types: Mapping[str, ConnectorType] | None = None
_lock = threading.Lock()


class UnknownConnectorType(TickethubError):
    pass


def connector_types() -> Mapping[str, ConnectorType]:
    """Name -> type, for every installed connector type (read once; looked up on every webhook and event, so
    after the first call no lock is taken and nothing is copied)."""
    global _types
    loaded = _types
    if loaded is not None:
        return loaded
    with _lock:
        if _types is None:
            found: dict[str, ConnectorType] = {}
            for entry in entry_points(group=ENTRY_POINT_GROUP):
                declared = entry.load()
                if not isinstance(declared, ConnectorType) or declared.name != entry.name:
                    raise TickethubError(f"entry point `{entry.name} = {entry.value}` in group {ENTRY_POINT_GROUP}"
                                         f" must name a ConnectorType called `{entry.name}`")
                found[entry.name] = declared
            _types = MappingProxyType(found)
        return _types


def connector_type(name: str) -> ConnectorType:
    types = connector_types()
    if name not in types:
        raise UnknownConnectorType(f"unknown connector type `{name}`; known: {', '.join(sorted(types))}"
                                   " (a third-party type is found once its package is installed)")
    return types[name]


def refresh() -> None:
    """Look for entry points again (after a package was installed into the running process)."""
    global _types
    with _lock:
        _types = None
