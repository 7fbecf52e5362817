"""Calls that this process's threads make at the same time, combined into one: each call hands over its items, one
thread at a time runs the work over the items of every call waiting, and each call gets back its own results.

For work whose cost is per run rather than per item, and which would otherwise queue: the store's group commit
(`Store.together`: on SQLite every transaction takes the one write lock and commits), and the deliveries worker's
claims and outcomes (`hub.usecases.deliver`): on PostgreSQL claims take turns on one lock (see
`hub.store.deliveries._CLAIM_TURN`), and with each thread claiming its own batch the lock was held through six
round trips per batch, a few milliseconds each with the interpreter shared among the threads; 32 threads on
average stood waiting for it (pg_stat_activity sampled through bench/pipeline.py's 100 events/s run), and
190-268 deliveries/s of 500 offered got through.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Combiner(Generic[T, R]):
    """`combiner(items)` returns `run(items)`, but the items of calls from other threads that are waiting meanwhile
    go through the same `run`, in the order the calls came: up to `most` items per run (the first call's all, however
    many). `run` may return the results of only its first items (at least one): the rest go back to the head of the
    queue, in order, for the next run. `key`: items that must not be in one run together (the same delivery claimed
    twice) wait for the next one. If `run` raises, every call it was running raises that (even a KeyboardInterrupt:
    no call is left waiting for a run that ended)."""

    def __init__(self, run: Callable[[list[T]], Sequence[R]], most: int,
                 key: Callable[[T], Hashable] | None = None):
        self._run, self._most, self._key = run, most, key
        self._waiting: list[_Call[T, R]] = []
        self._waiting_lock = threading.Lock()
        self._leader = threading.Lock()

    def __call__(self, items: Sequence[T]) -> list[R]:
        call: _Call[T, R] = _Call(list(items))
        if not call.items:
            return []
        with self._waiting_lock:
            self._waiting.append(call)
        while not call.done:
            if not self._leader.acquire(blocking=False):
                call.wake.wait()  # until a run has done it, or the lead is handed to this thread
                call.wake.clear()
                continue
            try:
                while not call.done:
                    self._run_next()
            finally:
                self._leader.release()
                with self._waiting_lock:
                    following = self._waiting[0] if self._waiting else None
                if following is not None:  # it arrived during the last run: it leads the next one
                    following.wake.set()
        if call.error is not None:
            raise call.error
        return call.results

    def _run_next(self) -> None:
        with self._waiting_lock:
            taken: list[_Call[T, R]] = []
            keys: set[Hashable] = set()
            count = 0
            for call in self._waiting:
                rest = call.rest()
                if taken and count + len(rest) > self._most:
                    break
                mine = {self._key(item) for item in rest} if self._key else set()
                if keys & mine:
                    continue
                keys |= mine
                taken.append(call)
                count += len(rest)
            self._waiting = [call for call in self._waiting if all(call is not t for t in taken)]
        try:
            results = list(self._run([item for call in taken for item in call.rest()]))
            if not results:
                raise RuntimeError("a combined run returned no result")  # it would run again forever
        except BaseException as exc:  # noqa: BLE001 (handed to each call it was running, none left waiting)
            for call in taken:
                call.error = exc
            results = []
        unfinished = []
        for call in taken:
            if call.error is None:
                got = results[:len(call.rest())]
                results = results[len(got):]
                call.results.extend(got)
                if call.rest():
                    unfinished.append(call)
                    continue
            call.done = True
            call.wake.set()
        if unfinished:  # run stopped short: their rest goes first next time
            with self._waiting_lock:
                self._waiting[:0] = unfinished


class _Call(Generic[T, R]):
    def __init__(self, items: list[T]):
        self.items, self.done, self.wake = items, False, threading.Event()
        self.results: list[R] = []
        self.error: BaseException | None = None

    def rest(self) -> list[T]:
        """The items not run yet."""
        return self.items[len(self.results):]
