"""New tickets' global IDs on PostgreSQL, reserved a block at a time per process.

Each process takes ID_BLOCK consecutive numbers of the day's counter (`id_sequences`) in a transaction of its own
that is one statement (`Store.reserve_ticket_ids`), committed before any of them is used, and hands them out to its
threads one by one (a set of events that needs more takes as many as it needs); the counter's row is
written once per block instead of once per new ticket, so two events workers no longer take turns on it for every
ticket (the issue's demand). What this gives up: IDs stay unique and are never reused, but they are not gap-free
(a process that stops leaves the rest of its block unused, as an ID reserved for a record that another worker
linked first always was) nor in creation order across workers and threads (each hands out its own block). On
SQLite, where one transaction writes at a time anyway, each ID is taken in the transaction that uses it:
gap-free and in order.
"""

from __future__ import annotations

import threading
from collections import deque
from datetime import date

from hub.store.unit_of_work import Store

ID_BLOCK = 16  # numbers per reservation: at most this many left unused by a process that stops, per day and code
_DAYS_KEPT = 4  # blocks of older days a process still holds are dropped (an event of last week opens few tickets)


class IdBlocks:
    """Thread-safe: `take_many` from any thread."""

    def __init__(self, store: Store, size: int = ID_BLOCK):
        self.store, self.size = store, size
        self._free: dict[tuple[date, str], deque[str]] = {}
        self._lock = threading.Lock()

    def take_many(self, day: date, code: str, count: int) -> list[str]:
        """The next `count` unused IDs for (day, code), in order: what is left of this process's block, and if that
        is not enough one new reservation for the rest (at least a block)."""
        with self._lock:
            free = self._free.setdefault((day, code), deque())
            taken = [free.popleft() for _ in range(min(count, len(free)))]
        if len(taken) == count:
            return taken
        wanted = count - len(taken)
        block = self.store.reserve_ticket_ids(day, code, max(self.size, wanted))  # committed: never handed out twice
        with self._lock:
            self._free.setdefault((day, code), deque()).extend(block[wanted:])
            for old in sorted(self._free)[:-_DAYS_KEPT]:
                del self._free[old]
        return taken + block[:wanted]
