"""The sliding-window log's edge cases, below the bucket API."""

from __future__ import annotations

import random

from pyrate_limiter import Rate
from pyrate_limiter._window import NEVER, SlidingLog


def window_ok(entries: list[tuple[int, int]], rates: list[Rate]) -> bool:
    for rate in rates:
        for start, _ in entries:
            if sum(w for ts, w in entries if start <= ts < start + rate.interval) > rate.limit:
                return False
    return True


def test_out_of_order_items_are_inserted_in_place() -> None:
    log = SlidingLog([Rate(3, 1000)])
    assert log.reserve("b", 110, 1, None) == (0, None)
    assert log.reserve("a", 100, 1, None) == (0, None)  # a caller whose clock lags
    assert log.peek(0) == ("b", 110)
    assert log.peek(1) == ("a", 100)
    assert log.reserve("c", 105, 1, None) == (0, None)
    assert log.reserve("d", 120, 1, None)[1] is not None
    assert log.count() == 3


def test_admitted_entries_respect_every_window_exactly() -> None:
    rng = random.Random(11)
    rates = [Rate(4, 100), Rate(9, 1000)]
    log = SlidingLog(rates)
    recorded: list[tuple[int, int]] = []
    t = 0
    for _ in range(1500):
        t += rng.randint(0, 20)
        stamp = t - rng.randint(0, 3)
        weight = rng.randint(1, 3)
        delay, rate = log.reserve("k", stamp, weight, rng.choice([None, 0, 300]))
        if rate is None:
            recorded.append((stamp + delay, weight))
    recorded.sort()
    assert window_ok(recorded, rates)
    # And it admitted nearly all that the slow rate allows over the run.
    assert sum(w for _, w in recorded) >= 0.8 * rates[-1].limit * t / rates[-1].interval


def test_heavier_than_limit_never_fits() -> None:
    log = SlidingLog([Rate(3, 1000), Rate(10, 5000)])
    assert log.reserve("k", 0, 4, 10**9) == (NEVER, Rate(3, 1000))
    assert log.waiting(0, 4) == NEVER
    assert log.count() == 0


def test_compaction_keeps_counts_and_windows() -> None:
    log = SlidingLog([Rate(2, 10)])
    for t in range(0, 200_000, 10):
        assert log.reserve("k", t, 2, None) == (0, None)
    assert log.count() == 2
    assert log.reserve("k", 199_995, 1, None)[1] is not None
    assert log.leak(10**9) == 2
    assert log.count() == 0


def test_a_late_item_never_reaches_back_over_trimmed_entries() -> None:
    log = SlidingLog([Rate(3, 1000)])
    assert log.reserve("a", 0, 2, None) == (0, None)
    assert log.reserve("c", 1000, 1, None) == (0, None)  # trims "a"
    # Stamped at 999, when "a" still counted: judged and recorded at 1000 instead.
    assert log.reserve("d", 999, 2, None) == (0, None)
    assert log.peek(0) == ("d", 1000)
    assert log.reserve("e", 999, 1, None)[1] is not None
    assert log.waiting(500, 1) == 1500
