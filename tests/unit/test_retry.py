"""The one retry policy: what an answer means, how long to wait (full jitter, cap, Retry-After), when to give up."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from random import Random

import pytest

from hub.core.ports import parse_retry_after
from hub.core.retry import RetryPolicy, classify

pytestmark = pytest.mark.unit

NOW = datetime(2026, 2, 13, 9, 30, tzinfo=UTC)
SAMPLES = 2000


# ---- classify ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
def test_a_2xx_answer_is_delivered(status: int) -> None:
    """Any success answer counts as delivered."""
    assert classify(status) == "delivered"


@pytest.mark.parametrize("status", [None, 500, 502, 503, 504, 599, 408, 409, 429])
def test_no_answer_a_server_error_timeout_conflict_or_throttle_is_retried(status: int | None) -> None:
    """A timeout, a refused connection, a 5xx, 408, 409 and 429 are worth another try."""
    assert classify(status) == "retry"


@pytest.mark.parametrize("status", [300, 301, 400, 401, 403, 404, 405, 410, 413, 422])
def test_any_other_answer_goes_to_the_dead_letters_at_once(status: int) -> None:
    """A request the system refuses (4xx other than 408/409/429) cannot succeed by repeating it."""
    assert classify(status) == "dead"


@pytest.mark.parametrize("status", [None, 200, 500, 429])
def test_a_result_marked_permanent_is_dead_whatever_the_status(status: int | None) -> None:
    """A connector that says no retry can help (e.g. it cannot be built) dead-letters the write."""
    assert classify(status, permanent=True) == "dead"


# ---- delay: exponential back-off with full jitter ---------------------------------------------------

@pytest.mark.parametrize("attempt", [1, 2, 3, 4, 5, 6, 8, 10])
def test_each_wait_stays_within_the_jitter_window_of_its_attempt(attempt: int) -> None:
    """The wait after attempt n is between half the base and min(cap, base * 2**(n-1))."""
    policy = RetryPolicy(base_seconds=5.0, cap_seconds=3600.0)
    rng = Random(1234 + attempt)
    ceiling = min(3600.0, 5.0 * 2 ** (attempt - 1))
    waits = [policy.delay(attempt, rng) for _ in range(SAMPLES)]
    assert all(2.5 <= w <= ceiling for w in waits)


def test_the_first_retry_comes_within_the_base_wait() -> None:
    """After the first failure the hub tries again within 5 s (the default base), never at once."""
    rng = Random(7)
    waits = [RetryPolicy().delay(1, rng) for _ in range(SAMPLES)]
    assert min(waits) >= 2.5 and max(waits) <= 5.0


def test_the_jitter_spreads_waits_over_the_whole_window() -> None:
    """Full jitter: retries of many deliveries failing together are spread from near the floor to the ceiling."""
    policy, rng = RetryPolicy(base_seconds=5.0, cap_seconds=3600.0), Random(42)
    waits = [policy.delay(6, rng) for _ in range(SAMPLES)]  # window 2.5 .. 160 s
    assert min(waits) < 10 and max(waits) > 150
    assert len({round(w, 3) for w in waits}) > SAMPLES * 0.9  # not a handful of fixed values


def test_the_ceiling_doubles_with_each_attempt_until_the_cap() -> None:
    """The largest possible wait grows 5, 10, 20, 40 ... seconds and stops at the cap."""
    policy = RetryPolicy(base_seconds=5.0, cap_seconds=60.0)
    rng = Random(3)
    largest = [max(policy.delay(n, rng) for _ in range(SAMPLES)) for n in range(1, 8)]
    assert [round(x) for x in largest[:4]] == [5, 10, 20, 40]
    assert all(55 < x <= 60 for x in largest[4:])


@pytest.mark.parametrize("attempt", [12, 30, 100, 1100, 10_000])
def test_no_wait_is_longer_than_the_cap_however_many_attempts(attempt: int) -> None:
    """A write failing for days waits at most the cap between tries, even after thousands of attempts."""
    policy = RetryPolicy(base_seconds=5.0, cap_seconds=60.0, horizon_seconds=30 * 86400)
    rng = Random(attempt)
    assert all(2.5 <= policy.delay(attempt, rng) <= 60.0 for _ in range(200))


def test_the_same_seed_gives_the_same_waits() -> None:
    """The caller's random source decides the jitter, so a pinned seed replays the same schedule."""
    policy = RetryPolicy()
    first = [policy.delay(n, rng) for rng in [Random(99)] for n in range(1, 10)]
    again = [policy.delay(n, rng) for rng in [Random(99)] for n in range(1, 10)]
    assert first == again


# ---- delay: Retry-After -----------------------------------------------------------------------------

@pytest.mark.parametrize("attempt", [1, 2, 3])
def test_a_system_asking_for_time_gets_at_least_that_long(attempt: int) -> None:
    """A 429 with Retry-After: 120 is not retried before 120 s, whatever the jitter would have picked."""
    rng = Random(attempt)
    assert all(RetryPolicy().delay(attempt, rng, retry_after=120) >= 120 for _ in range(SAMPLES))


def test_a_short_retry_after_does_not_shorten_the_back_off() -> None:
    """Retry-After is a minimum: asking for 1 s does not make the hub retry sooner than its own back-off."""
    policy = RetryPolicy(base_seconds=5.0)
    for seed in range(50):
        assert policy.delay(8, Random(seed), retry_after=1) == policy.delay(8, Random(seed))


def test_a_retry_after_longer_than_the_cap_is_held_to_the_cap() -> None:
    """A system asking for two hours is retried after the one-hour cap at the latest."""
    policy = RetryPolicy(cap_seconds=3600.0)
    assert policy.delay(1, Random(0), retry_after=7200) == 3600.0


# ---- gives_up: the horizon ---------------------------------------------------------------------------

def test_a_next_attempt_within_the_horizon_is_still_made() -> None:
    """A delivery 23 hours old whose next try falls before the 24 h horizon keeps trying."""
    policy = RetryPolicy(horizon_seconds=86400.0)
    assert not policy.gives_up(age_seconds=23 * 3600, wait=3599)
    assert not policy.gives_up(age_seconds=86400 - 10, wait=10)  # exactly at the horizon is still allowed


def test_a_next_attempt_past_the_horizon_gives_up() -> None:
    """When the next try would fall after the horizon, the delivery is given up (dead-lettered) instead."""
    policy = RetryPolicy(horizon_seconds=86400.0)
    assert policy.gives_up(age_seconds=86400 - 10, wait=10.001)
    assert policy.gives_up(age_seconds=0, wait=86401)


def test_a_schedule_of_failures_stays_inside_the_horizon() -> None:
    """Following the policy, every attempt of a write that always fails is made within the horizon."""
    policy, rng = RetryPolicy(base_seconds=5.0, cap_seconds=3600.0, horizon_seconds=86400.0), Random(5)
    age, attempt = 0.0, 1
    while True:
        wait = policy.delay(attempt, rng)
        if policy.gives_up(age, wait):
            break
        age, attempt = age + wait, attempt + 1
    assert age <= 86400
    assert 86400 - age < 3600  # it gave up only when the next wait (at most the cap) would overshoot
    assert attempt > 20  # a day of hourly retries, after the first quick ones


# ---- parse_retry_after --------------------------------------------------------------------------------

@pytest.mark.parametrize(("header", "seconds"), [("120", 120.0), ("0", 0.0), (" 30 ", 30.0), ("86400", 86400.0)])
def test_retry_after_in_seconds(header: str, seconds: float) -> None:
    """A delta-seconds Retry-After is read as that many seconds."""
    assert parse_retry_after(header, NOW.timestamp()) == seconds


def test_retry_after_as_an_http_date_is_the_time_until_then() -> None:
    """An HTTP-date Retry-After two minutes ahead means wait 120 s."""
    header = format_datetime(NOW + timedelta(minutes=2), usegmt=True)  # e.g. "Fri, 13 Feb 2026 09:32:00 GMT"
    assert parse_retry_after(header, NOW.timestamp()) == pytest.approx(120.0)
    assert parse_retry_after("Fri, 13 Feb 2026 09:35:00 GMT", NOW.timestamp()) == pytest.approx(300.0)


def test_retry_after_with_a_date_in_the_past_means_no_wait() -> None:
    """An HTTP date already past asks for no extra wait (never a negative one)."""
    assert parse_retry_after("Fri, 13 Feb 2026 09:00:00 GMT", NOW.timestamp()) == 0.0


@pytest.mark.parametrize("header", [None, "", "   ", "soon", "1.5", "-5", "12abc", "\u00b2", "\u0663"])
def test_a_missing_or_unreadable_retry_after_is_ignored(header: str | None) -> None:
    """No header, or one that is neither whole seconds nor an HTTP date, means the hub's own back-off."""
    assert parse_retry_after(header, NOW.timestamp()) is None
