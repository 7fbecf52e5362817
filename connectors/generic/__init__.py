"""The generic connector: in-house services that speak the hub's own webhook format."""
