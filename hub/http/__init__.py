"""hub/http."""
