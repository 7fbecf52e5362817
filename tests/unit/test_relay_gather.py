"""How long the relay gathers newly accepted events before publishing them in one message (`gather_for`):
hardly at all when they come a few a second, longer when they come faster, so that a message carries several
(each message costs the workers a transaction), and never longer than the busy bound."""

from __future__ import annotations

import math

from hub.messaging.relay import ROUND_GOAL, gather_for

GATHER, BUSY, WINDOW = 0.002, 0.03, 0.05


def pause_after(events: int, every: float) -> float:
    """The pause before the next round, woken right after a round that published `events`, `every` seconds after
    the round before it."""
    return gather_for(10.0, events, (10.0 - every, 10.0), GATHER, BUSY, WINDOW)


def test_events_a_few_a_second_are_published_almost_at_once() -> None:
    assert gather_for(10.0, 1, (9.7, 9.8), GATHER, BUSY, WINDOW) == GATHER  # 10/s: the last round 200 ms ago
    assert gather_for(10.0, 0, (-math.inf, -math.inf), GATHER, BUSY, WINDOW) == GATHER  # the first round


def test_a_hundred_a_second_wait_up_to_the_busy_bound() -> None:
    assert pause_after(1, 0.012) == BUSY  # one event per round, rounds 12 ms apart: waiting for four takes longer
    assert pause_after(3, 0.032) == BUSY


def test_faster_events_wait_only_for_enough_of_them() -> None:
    assert math.isclose(pause_after(5, 0.010), ROUND_GOAL * 0.010 / 5)  # 500/s: 8 ms gathers four
    assert pause_after(500, 0.1) == GATHER  # a flood: rounds fill up anyway


def test_a_lone_event_right_after_a_busy_spell_still_waits_for_company() -> None:
    assert pause_after(1, 0.5) == BUSY  # the last round was 0 s ago: events are still coming
    assert gather_for(10.2, 1, (9.5, 10.0), GATHER, BUSY, WINDOW) == GATHER  # 200 ms later: quiet again
