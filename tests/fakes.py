"""Fakes shared by tests: a subscribed system that records the writes the hub sends it."""

from __future__ import annotations

from dataclasses import dataclass, field

from hub.core.ports import WriteRequest, WriteResult


@dataclass
class RecordingWriter:
    """A system that accepts every write, remembers it, and names its record `local_id`."""

    system: str
    local_id: str = "SHP-1"
    writes: list[WriteRequest] = field(default_factory=list)

    def write(self, request: WriteRequest) -> WriteResult:
        self.writes.append(request)
        return WriteResult(200, local_id=self.local_id)
