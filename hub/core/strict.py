"""The base of every model read from outside (configuration, mapping files, payloads, a connector type's
options): an unknown key is an error, not silently ignored, and a value once read does not change."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
