"""The hub's exception tree, drawn here where it is defined.

    TickethubError
     ├── ConfigError          a configuration file or variable is wrong (names file, key and fix)
     ├── MappingError         one or more mapping files are wrong (carries every problem found)
     ├── InvalidValue         a value the canonical model or a target system would refuse
     ├── InvalidTicketId      a string that is not a well-formed global ticket ID
     ├── UnknownSystem        a system name that is not configured
     ├── TicketNotFound       a well-formed ticket ID (or system/local ID) the hub does not know
     └── OrphanRecord         a record from a non-origin system with no cross-reference

Every message is written for the person who has to act on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class TickethubError(Exception):
    """Base of every error the hub raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a file, said so that a person can fix it."""

    file: str
    key: str
    message: str
    fix: str = ""

    def __str__(self) -> str:
        text = f"{self.file}, key `{self.key}`: {self.message}"
        return f"{text} (fix: {self.fix})" if self.fix else text


class ConfigError(TickethubError):
    def __init__(self, problems: Sequence[Problem]):
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class MappingError(ConfigError):
    """A mapping file is wrong (one kind of configuration problem)."""


class InvalidValue(TickethubError):
    """A value that the canonical model, or the named target system, refuses."""


class InvalidTicketId(TickethubError):
    pass


class UnknownSystem(TickethubError):
    pass


class TicketNotFound(TickethubError):
    pass


class OrphanRecord(TickethubError):
    pass
