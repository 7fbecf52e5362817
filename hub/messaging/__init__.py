"""hub/messaging."""
