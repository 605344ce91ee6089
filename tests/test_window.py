"""The sliding-window log's edge cases, below the bucket API."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

import pytest

from pyrate_limiter import Rate, RateItem
from pyrate_limiter._rate import recorded_at
from pyrate_limiter._window import NEVER, SlidingLog

from .windows import assert_windows_hold

if TYPE_CHECKING:
    from pyrate_limiter._rate import Verdict


def test_out_of_order_items_are_inserted_in_place() -> None:
    log = SlidingLog([Rate(3, 1000)])
    assert (log.reserve(RateItem("b", 110, 1), None))[:2] == (0, None)
    assert (log.reserve(RateItem("a", 100, 1), None))[:2] == (0, None)  # a caller whose clock lags
    assert log.peek(0) == ("b", 110)
    assert log.peek(1) == ("a", 100)
    assert (log.reserve(RateItem("c", 105, 1), None))[:2] == (0, None)
    assert log.reserve(RateItem("d", 120, 1), None)[1] is not None
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
        item = RateItem("k", stamp, weight)
        verdict = log.reserve(item, rng.choice([None, 0, 300]))
        if verdict[1] is None:
            recorded.append((recorded_at(item, verdict), weight))  # later than asked if it came too late
    recorded.sort()
    assert_windows_hold(recorded, rates)
    # And it admitted nearly all that the slow rate allows over the run.
    assert sum(w for _, w in recorded) >= 0.8 * rates[-1].limit * t / rates[-1].interval


def test_heavier_than_limit_never_fits() -> None:
    log = SlidingLog([Rate(3, 1000), Rate(10, 5000)])
    assert (log.reserve(RateItem("k", 0, 4), 10**9))[:2] == (NEVER, Rate(3, 1000))
    assert log.waiting(0, 4) == NEVER
    assert log.count() == 0


def test_compaction_keeps_counts_and_windows() -> None:
    log = SlidingLog([Rate(2, 10)])
    for t in range(0, 200_000, 11):  # each item frees its room 11 ms after its stamp
        assert (log.reserve(RateItem("k", t, 2), None))[:2] == (0, None)
    assert log.count() == 2
    assert log.reserve(RateItem("k", 199_995, 1), None)[1] is not None
    assert log.leak(10**9) == 2
    assert log.count() == 0


def test_a_late_item_never_reaches_back_over_trimmed_entries() -> None:
    log = SlidingLog([Rate(3, 1000)])
    assert (log.reserve(RateItem("a", 0, 2), None))[:2] == (0, None)
    assert (log.reserve(RateItem("c", 1001, 1), None))[:2] == (0, None)  # trims "a"
    # Stamped at 1000, when "a" still counted: judged and recorded at 1001 instead, as the verdict says.
    late = RateItem("d", 1000, 2)
    assert log.reserve(late, None) == (0, None, 1001)
    assert late.timestamp == 1000
    assert log.peek(0) == ("d", 1001)
    assert log.reserve(RateItem("e", 1000, 1), None)[1] is not None
    assert log.waiting(500, 1) == 1502


def test_a_flushed_log_limits_from_scratch_after_trims() -> None:
    log = SlidingLog([Rate(2, 10)])
    for t in (0, 11, 22):  # each trims the one before: the trimmed weight grows
        assert (log.reserve(RateItem("k", t, 2), None))[:2] == (0, None)
    log.flush()
    assert (log.reserve(RateItem("k", 30, 2), None))[:2] == (0, None)
    assert log.reserve(RateItem("k", 30, 1), None) == (11, Rate(2, 10), (0,))
    assert log.count() == 2


class NaiveLog:
    """The rule of _window.py written the slow, obvious way: a reference for the fast log.

    An entry stamped ``ts`` counts in the window at ``s`` of a rate when ``s - interval <= ts``.
    """

    def __init__(self, rates: list[Rate]) -> None:
        self.rates = rates
        self.longest = max(rate.interval for rate in rates)
        self.entries: list[tuple[int, int, str]] = []  # (ts, weight, name), in order
        self.floor: int | None = None

    def earliest(self, t: int, weight: int) -> tuple[int, Rate | None]:
        at, blocking = t, None
        for rate in self.rates:
            if weight > rate.limit:
                return NEVER, rate
            s = t
            while sum(w for ts, w, _ in self.entries if ts >= s - rate.interval) + weight > rate.limit:
                s = min(ts for ts, _, _ in self.entries if ts >= s - rate.interval) + rate.interval + 1
            if s > at:
                at, blocking = s, rate
        return at, blocking

    def trim(self, horizon: int) -> None:
        gone = [e for e in self.entries if e[0] <= horizon]
        if gone:
            self.floor = max(e[0] for e in gone) + self.longest + 1
            self.entries = [e for e in self.entries if e[0] > horizon]

    def reserve(self, item: RateItem, max_delay: int | None) -> Verdict:
        name, weight = item.name, item.weight
        now = t = item.timestamp if self.floor is None else max(item.timestamp, self.floor)
        late = now != item.timestamp  # decided at the floor: the verdict says where it went
        self.trim(now - self.longest - 1)
        at, rate = self.earliest(now, weight)
        if rate is None:
            self.insert(now, weight, name)
            return (0, None, now) if late else (0, None)
        if at != NEVER and max_delay is not None and at - t <= max_delay:
            self.insert(at, weight, name)
            return (at - t, None, at) if late else (at - t, None)
        return (NEVER if at == NEVER else at - t), rate, self.remaining(now)

    def remaining(self, t: int) -> tuple[int, ...]:
        """Units each rate has left at ``t``: its limit less what counts there, reservations included."""
        return tuple(
            max(rate.limit - sum(w for ts, w, _ in self.entries if ts >= t - rate.interval), 0) for rate in self.rates
        )

    def insert(self, at: int, weight: int, name: str) -> None:
        i = len([e for e in self.entries if e[0] <= at])
        self.entries.insert(i, (at, weight, name))

    def count(self) -> int:
        return sum(w for _, w, _ in self.entries)

    def peek(self, index: int) -> tuple[str, int] | None:
        units = [(name, ts) for ts, w, name in self.entries for _ in range(w)]
        return units[-1 - index] if 0 <= index < len(units) else None


# Tight rates refuse often; roomy ones mostly admit on the append path, between late items.
@pytest.mark.parametrize("rates", [[Rate(3, 100), Rate(7, 400)], [Rate(40, 100), Rate(90, 400)]])
def test_fast_log_matches_the_obvious_rule_on_random_traffic(rates: list[Rate]) -> None:
    rng = random.Random(5)
    fast, slow = SlidingLog(rates), NaiveLog(rates)
    t = 0
    for step in range(4000):
        t += rng.randint(0, 25)
        stamp = t - rng.choice([0, 0, 0, 5, 150, 500])  # some items come late, some very late
        weight, name = rng.randint(0, 4), f"n{step % 5}"
        max_delay = rng.choice([None, 0, 40, 1000])
        fast_item, slow_item = RateItem(name, stamp, weight), RateItem(name, stamp, weight)
        assert fast.reserve(fast_item, max_delay) == slow.reserve(slow_item, max_delay), step
        assert fast_item.timestamp == slow_item.timestamp
        if step % 7 == 0 and slow.entries:
            ts, w, victim = rng.choice(slow.entries)
            assert fast.release(victim, ts, w)
            # Of identical entries, the newest goes, as in the fast log.
            del slow.entries[len(slow.entries) - 1 - slow.entries[::-1].index((ts, w, victim))]
        if step % 11 == 0:
            before = slow.count()
            slow.trim(t - slow.longest - 1)
            assert fast.leak(t) == before - slow.count()
        probe = rng.randint(1, 4)
        expected_at, expected_rate = slow.earliest(max(t, slow.floor or t), probe)
        expected = 0 if expected_rate is None else (NEVER if expected_at == NEVER else expected_at - t)
        assert fast.waiting(t, probe) == expected
        assert fast.count() == slow.count()
        assert [fast.peek(i) for i in range(4)] == [slow.peek(i) for i in range(4)]
