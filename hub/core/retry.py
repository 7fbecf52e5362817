"""The retry policies: for deliveries, what an answer means and how long to wait before the next try (the
caller passes the random source, so tests can pin the jitter; Celery does the waiting); for bulk reads, a
page that fails transiently is tried again here, a few times with back-off (tenacity), since no task
layer retries a single page. Deliveries never go through `read_page`, so no retry is stacked on another.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from random import Random
from typing import Literal, TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

from hub.core.ports import TransientReadError

T = TypeVar("T")

Verdict = Literal["delivered", "retry", "dead"]
RETRYABLE_4XX = frozenset({408, 409, 429})


def classify(status_code: int | None, permanent: bool = False) -> Verdict:
    """2xx delivered; no answer, 5xx, 408, 409 and 429 are worth retrying; any other answer is permanent."""
    if permanent:
        return "dead"
    if status_code is None:
        return "retry"
    if 200 <= status_code < 300:
        return "delivered"
    if status_code >= 500 or status_code in RETRYABLE_4XX:
        return "retry"
    return "dead"


@dataclass(frozen=True)
class RetryPolicy:
    base_seconds: float = 5.0
    cap_seconds: float = 3600.0
    horizon_seconds: float = 86400.0

    def delay(self, attempt: int, rng: Random, retry_after: float | None = None) -> float:
        """Wait before attempt `attempt + 1`: exponential back-off with full jitter, never less than the
        answer's Retry-After (a system asking for time gets it, up to the cap)."""
        # the exponent is bounded: 2 ** 1024 no longer fits a float, and the cap is reached long before
        ceiling = min(self.cap_seconds, self.base_seconds * 2.0 ** min(max(0, attempt - 1), 1000))
        wait = rng.uniform(self.base_seconds / 2, ceiling) if ceiling > self.base_seconds / 2 else ceiling
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.cap_seconds))
        return wait

    def gives_up(self, age_seconds: float, wait: float) -> bool:
        """True when the next attempt would fall past the horizon measured from the delivery's creation."""
        return age_seconds + wait > self.horizon_seconds


READ_ATTEMPTS = 4
READ_WAIT_CAP = 30.0  # seconds: a Retry-After longer than this is not waited for within a read


def _wait_for(state: RetryCallState) -> float:
    error = state.outcome.exception() if state.outcome else None
    asked = getattr(error, "retry_after", None)
    backoff = min(READ_WAIT_CAP, 0.5 * 2 ** (state.attempt_number - 1))
    return min(READ_WAIT_CAP, max(backoff, asked or 0.0))


def read_page(fetch: Callable[[], T], attempts: int = READ_ATTEMPTS, sleep: Callable[[float], None] = time.sleep) -> T:
    """`fetch()` one page of a bulk read; a TransientReadError is tried again (back-off 0.5, 1, 2 s, or the
    answer's Retry-After up to 30 s) up to `attempts` times in all, then raised."""
    retrying = Retrying(stop=stop_after_attempt(attempts), wait=_wait_for, sleep=sleep, reraise=True,
                        retry=retry_if_exception_type(TransientReadError))
    return retrying(fetch)
