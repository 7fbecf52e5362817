"""Moving new events from the database to the broker: the relay (at once, in batches). What a lost
message leaves behind is published again by the sweeper (`hub.usecases.sweep`)."""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Protocol

import structlog

from hub.store.engine import reason
from hub.store.unit_of_work import Store


class _Wired(Protocol):
    """What the relay needs of the hub: its store and its clock."""

    @property
    def store(self) -> Store: ...

    @property
    def clock(self) -> Callable[[], datetime]: ...

log = structlog.get_logger("tickethub.relay")

ROUND_GOAL = 4  # events a busy round waits for (up to busy_gather)


def gather_for(now: float, last_round: int, round_ends: tuple[float, float], gather: float, busy_gather: float,
               busy_window: float) -> float:
    """How long the relay gathers before a round: `gather` when events come a few a second (the last round
    published one and ended `busy_window` ago or more); else long enough for ROUND_GOAL events at the pace of
    the last round (`last_round` events since the round before it ended), `gather` at least and `busy_gather`
    at most."""
    before, last = round_ends
    if last_round <= 1 and now - last >= busy_window:
        return gather
    for_goal = ROUND_GOAL * max(last - before, 0.001) / max(last_round, 1)
    return max(gather, min(busy_gather, for_goal))


class Relay(threading.Thread):
    """Publishes newly accepted events in batches: woken by intake with the accepted event's id, and on
    a timer anyway (for events another API process accepted, or that a failed round left behind).

    Intake stores an event it tells the relay about as already dispatched (one INSERT, no second
    transaction here): the relay publishes those IDs as they are. If the publish fails they are marked
    undispatched again for the next round; if the process dies first, the sweeper finds them unprocessed
    and publishes them again. The inbox is scanned for undispatched events (accepted by a process with no
    relay, or left by a failed round) at most once per `interval`, since that scan walks the backlog.
    Once woken the relay waits before publishing (`pause`): `gather` seconds when events come a few a second, up to
    `busy_gather` when they come faster, so that a message carries several: a round per webhook cost the API
    process more than the webhook itself (bench/pipeline.py intake, embedded, two runs each: 654 and 767
    webhooks/s gathering 2 ms, 766 and 879 gathering 10 ms), and each message costs the events worker a
    transaction and the deliveries worker a claim and an outcome. End to end at 100 events/s (bench/pipeline.py,
    five receivers, one run each, embedded / PostgreSQL): the hub's CPU per event was 10.3-10.5 / 11.5 ms
    gathering 2 ms (a message an event), 6.0 / 6.3 ms gathering 30 ms, 5.1 / 5.5 ms gathering 40 ms; 202 ->
    processing p99 21-29 ms, 42 / 37 ms, 51 / 46 ms (its target: 50 ms). At higher rates a shorter pause gathers
    as many (ROUND_GOAL), and waiting longer would only delay them."""

    def __init__(self, hub: _Wired, publish: Callable[[list[str]], None], interval: float, batch: int = 500,
                 gather: float = 0.002, busy_gather: float = 0.03, busy_window: float = 0.05):
        super().__init__(name="tickethub-relay", daemon=True)
        self.hub, self.publish, self.interval, self.batch, self.gather = hub, publish, interval, batch, gather
        self.busy_gather, self.busy_window = busy_gather, busy_window
        self._last_round = 0  # events the last round published
        self._round_ends = (-math.inf, -math.inf)  # when the round before it, and it, ended
        self.wake = threading.Event()
        self.stopped = threading.Event()
        self._told: dict[str, None] = {}  # insertion-ordered, told twice is published once
        self._told_lock = threading.Lock()
        self._scanned_at = -math.inf
        self._failing = False

    def notify(self, event_id: str | None = None) -> None:
        if event_id is not None:
            with self._told_lock:
                self._told[event_id] = None
        if not self.wake.is_set():  # under load it is already set: skip the lock and the notify
            self.wake.set()

    def stop(self) -> None:
        self.stopped.set()
        self.wake.set()

    def run(self) -> None:
        while not self.stopped.is_set():
            if self.wake.wait(self.interval) and self.gather:
                # under load more arrive meanwhile: one round, one publish for them all
                time.sleep(self.pause(time.monotonic()))
            self.wake.clear()
            try:
                while (handled := self.relay_once()) >= self.batch:
                    pass
                self._last_round, self._round_ends = handled, (self._round_ends[1], time.monotonic())
                if self._failing:
                    log.info("relay rounds succeed again")
                self._failing = False
            except Exception as exc:  # keep relaying; the sweeper covers whatever this round missed
                if not self._failing:  # once per outage, not five times a second while the database is away
                    log.warning("relay round failed; retrying every round until it works", error=type(exc).__name__,
                                detail=reason(exc))
                self._failing = True

    def pause(self, now: float) -> float:
        """How long to gather before this round (see `gather_for`)."""
        return gather_for(now, self._last_round, self._round_ends, self.gather, self.busy_gather, self.busy_window)

    def relay_once(self) -> int:
        """Publish one batch: the events intake told about, and (once per interval) any found undispatched.
        Returns how many it handled, so that `run` goes on while there may be more."""
        with self._told_lock:
            told = list(itertools.islice(self._told, self.batch))
            for event_id in told:
                del self._told[event_id]
        ids = told
        if time.monotonic() - self._scanned_at >= self.interval:
            self._scanned_at = time.monotonic()
            with self.hub.store.unit_of_work() as uow:
                found = uow.deliveries.take_undispatched_events(self.hub.clock(), self.batch)
                uow.commit()
            ids = list(dict.fromkeys(told + found))
        if ids:
            self._publish(ids)
        return len(ids)

    def _publish(self, ids: list[str]) -> None:
        try:
            self.publish(ids)
        except Exception:
            with self.hub.store.unit_of_work() as uow:  # not published after all: leave them for the next round
                uow.inbox.mark_dispatched(ids, None)
                uow.commit()
            raise
