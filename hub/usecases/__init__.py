"""hub/usecases."""
