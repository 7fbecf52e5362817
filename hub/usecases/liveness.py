"""Use case: workers that say they are alive, so that a dead one's writes are taken back in seconds, not
after the lease.

Every process that claims deliveries has an identity (host, pid, start time) written on each claim, and
beats every `heartbeat_seconds`. A worker whose beat stopped for `worker_dead_after_seconds` is dead for
everyone: the sweeper ends its claims' leases and publishes them again. A worker starting on a host also
forgets the workers of that host whose processes are gone (its predecessors after a crash of `tickethub
up`) and takes their writes back at once. The lease stays the last resort (claims made by a process with
no identity). Fencing is the claim's attempt number: a worker that was only slow and comes back finds its
delivery claimed again and records its outcome as `late`, never over the newer claim; the write it sent
was the same row's same content, so nothing is delivered twice with different content.
"""

from __future__ import annotations

import os
import socket
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

from hub.usecases.context import Hub, utc_now

log = structlog.get_logger("tickethub.liveness")


@dataclass(frozen=True)
class WorkerIdentity:
    worker_id: str
    host: str
    pid: int
    started_at: datetime


def this_process(now: datetime | None = None) -> WorkerIdentity:
    started = now or utc_now()
    host, pid = socket.gethostname(), os.getpid()
    return WorkerIdentity(f"{host[:120]}:{pid}:{int(started.timestamp())}", host, pid, started)


def heartbeat(hub: Hub, me: WorkerIdentity) -> None:
    with hub.store.unit_of_work() as uow:
        uow.deliveries.beat(me.worker_id, me.host, me.pid, me.started_at, hub.clock())
        uow.commit()


def forget(hub: Hub, me: WorkerIdentity) -> None:
    """A worker stopping cleanly: whatever it still holds is taken back by the next sweep."""
    with hub.store.unit_of_work() as uow:
        uow.deliveries.forget_worker(me.worker_id)
        uow.commit()


def take_back_from_dead(hub: Hub, me: WorkerIdentity | None = None) -> list[int]:
    """Deliveries held by dead workers, their leases ended: to publish. With `me`, the workers of this host
    whose processes are gone are dead at once (a crashed `tickethub up`'s children, say)."""
    now = hub.clock()
    dead_before = now - timedelta(seconds=hub.settings.delivery.worker_dead_after_seconds)
    with hub.store.unit_of_work() as uow:
        if me is not None:
            for worker_id, pid in uow.deliveries.workers_on(me.host):
                if worker_id != me.worker_id and not _running(pid):
                    uow.deliveries.forget_worker(worker_id)
        ids = uow.deliveries.reclaim(now, dead_before)
        uow.commit()
    if ids:
        log.warning("writes taken back from dead workers", deliveries=len(ids))
    return ids


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


class Heartbeat(threading.Thread):
    """Beats for this process until stopped; a failed beat (database away) is logged once per outage."""

    def __init__(self, hub: Hub, me: WorkerIdentity):
        super().__init__(name="tickethub-heartbeat", daemon=True)
        self.hub, self.me = hub, me
        self.stopped = threading.Event()
        self._failing = False

    def run(self) -> None:
        while True:
            try:
                heartbeat(self.hub, self.me)
                if self._failing:
                    log.info("heartbeat back", worker=self.me.worker_id)
                self._failing = False
            except Exception as exc:  # noqa: BLE001 (keep beating; others take our writes if we stay away)
                if not self._failing:
                    log.warning("heartbeat failed", worker=self.me.worker_id, error=type(exc).__name__)
                self._failing = True
            if self.stopped.wait(self.hub.settings.delivery.heartbeat_seconds):
                return

    def stop(self) -> None:
        self.stopped.set()
        try:
            forget(self.hub, self.me)
        except Exception as exc:  # noqa: BLE001 (the sweep takes its writes back after the timeout anyway)
            log.warning("could not sign off", worker=self.me.worker_id, error=type(exc).__name__)
