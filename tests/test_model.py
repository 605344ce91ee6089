"""Every sync bucket against a reference written from the rule alone, step by step (hypothesis).

The rule: an item of weight ``w`` fits at stamp ``t`` when, for every rate ``(L, I)``, the weight
recorded at stamps from ``t - I`` on (``[t - I, t]`` and reservations after it) plus ``w`` is at
most ``L``. An item stamped ``s`` counts through ``s + I`` and frees its room at ``s + I + 1``.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from pyrate_limiter import Rate, RateItem
from pyrate_limiter._rate import recorded_at

from ._sync.bucket_kinds import ATOMIC, MAKERS
from .fake_clock import T0

if TYPE_CHECKING:
    from collections.abc import Callable

    from pyrate_limiter import AbstractBucket

NEVER = -1
NAMES = st.sampled_from(["a", "b", "c"])

# Cheap enough for six backends, three of them servers: the whole file takes about 20 s.
SETTINGS = settings(max_examples=40, stateful_step_count=30, deadline=None, database=None, report_multiple_bugs=False)


class ReferenceBucket:
    """The rule written the slow, obvious way: a list of recorded items and sums over windows."""

    def __init__(self, rates: list[Rate]) -> None:
        self.rates = rates
        self.longest = max(rate.interval for rate in rates)
        self.items: list[tuple[int, int, str]] = []  # (stamp, weight, name): by stamp, then arrival
        # The newest trimmed stamp, counting items of weight 0 (True) or not (False): whether such
        # an item is recorded at all is the backend's business, and only this stamp can tell.
        self.trimmed: dict[bool, int | None] = {True: None, False: None}

    def counted(self, s: int, rate: Rate) -> int:
        """Weight counting against ``rate`` at ``s``: stamped in ``[s - I, s]``, or later (reserved)."""
        return sum(weight for stamp, weight, _ in self.items if stamp >= s - rate.interval)

    def earliest(self, t: int, weight: int, rates: list[Rate]) -> int:
        """The first stamp ``>= t`` where the item fits every rate of ``rates``."""
        # A window's sum only changes where an item stops counting: at its stamp + interval + 1.
        ends = {stamp + rate.interval + 1 for stamp, _, _ in self.items for rate in rates}
        candidates = sorted({t} | {end for end in ends if end > t})
        return next(s for s in candidates if all(self.counted(s, r) + weight <= r.limit for r in rates))

    def decide(self, t: int, weight: int) -> tuple[int, set[int]]:
        """Where the item fits (``NEVER``: nowhere) and the rates that push it past ``t``."""
        too_heavy = [i for i, rate in enumerate(self.rates) if weight > rate.limit]
        if too_heavy:
            return NEVER, {too_heavy[0]}
        at = self.earliest(t, weight, self.rates)
        return at, {i for i, rate in enumerate(self.rates) if at > t and self.earliest(t, weight, [rate]) == at}

    def start(self, t: int, zero_counts: bool) -> int:
        """Nothing is judged or recorded before the newest trimmed stamp + longest + 1."""
        trimmed = self.trimmed[zero_counts]
        return t if trimmed is None else max(t, trimmed + self.longest + 1)

    def ambiguous(self, t: int) -> bool:
        """Whether the start of an item stamped ``t`` depends on weight-0 items being recorded."""
        return self.start(t, True) != self.start(t, False)

    def reserve(self, name: str, t: int, weight: int, max_delay: int | None) -> tuple[int, int, set[int] | None]:
        """Decide and maybe record: (stamp decided at, delay or wait, refusing rates or None)."""
        t = self.start(t, True)
        # Every decision trims what it passes over (DESIGN.md), which count() and leak() can see.
        self.trim(t - self.longest - 1)
        at, refusing = self.decide(t, weight)
        if at == NEVER:
            return t, NEVER, refusing
        if not refusing or (max_delay is not None and at - t <= max_delay):
            self.items.insert(len([item for item in self.items if item[0] <= at]), (at, weight, name))
            return t, at - t, None
        return t, at - t, refusing

    def waiting(self, t: int, weight: int) -> int:
        """Milliseconds from ``t`` until the item fits; ``NEVER`` if it cannot."""
        at, _ = self.decide(self.start(t, True), weight)
        return NEVER if at == NEVER else at - t

    def state(self, t: int, weight: int) -> tuple[int, list[tuple[Rate, int, int]]]:
        """``waiting``, and per rate the weight counted at ``t`` and ms until its oldest unit frees."""
        usage = []
        for rate in self.rates:
            counted = [stamp for stamp, weight, _ in self.items if stamp >= t - rate.interval and weight > 0]
            used = self.counted(t, rate)
            usage.append((rate, used, min(counted) + rate.interval + 1 - t if counted else 0))
        return self.waiting(t, weight), usage

    def trim(self, horizon: int) -> int:
        """Drop the items that can no longer count after ``horizon``; return their weight."""
        gone = [item for item in self.items if item[0] <= horizon]
        self.items = [item for item in self.items if item[0] > horizon]
        for zero_counts in (True, False):
            stamps = [stamp for stamp, weight, _ in gone if zero_counts or weight > 0]
            before = self.trimmed[zero_counts]
            if stamps:
                self.trimmed[zero_counts] = max(stamps) if before is None else max(before, *stamps)
        return sum(weight for _, weight, _ in gone)

    def release(self, stamp: int, weight: int, name: str) -> None:
        """Remove the newest item recorded at ``stamp`` with that weight and name."""
        index = max(i for i, item in enumerate(self.items) if item == (stamp, weight, name))
        del self.items[index]

    def count(self) -> int:
        """Units recorded, reservations included."""
        return sum(weight for _, weight, _ in self.items)

    def peek(self, index: int) -> tuple[str, int] | None:
        """Name and stamp of the unit ``index`` places from the newest (weight ``w``: ``w`` units)."""
        units = [(name, stamp) for stamp, weight, name in self.items for _ in range(weight)]
        return units[-1 - index] if 0 <= index < len(units) else None


def machine_for(make: Callable[[], AbstractBucket], rates: list[Rate]) -> type[RuleBasedStateMachine]:
    """A state machine driving a fresh bucket from ``make`` and the reference side by side."""
    intervals = [rate.interval for rate in rates]
    longest = max(intervals)
    # Mostly weights every rate can take, some too heavy for one rate or for all.
    weights = st.one_of(st.integers(0, rates[0].limit), st.integers(0, rates[-1].limit + 1))
    edges = sorted({0, 1, *intervals, *(interval + 1 for interval in intervals)})
    # Small steps keep the bucket busy; the edges land on the boundaries; big ones empty it.
    steps = st.one_of(st.sampled_from(edges), st.integers(0, 10), st.integers(0, 10), st.integers(11, 3 * longest))
    delays = st.one_of(st.none(), st.sampled_from(edges), st.integers(0, 2 * longest), st.just(4 * longest))

    class BucketAgreesWithTheRule(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.bucket = make()
            self.model = ReferenceBucket(rates)
            self.now = T0

        def teardown(self) -> None:
            self.bucket.flush()
            self.bucket.close()

        def check_reserve(self, name: str, stamp: int, weight: int, max_delay: int | None) -> None:
            item = RateItem(name, stamp, weight)
            verdict = self.bucket.reserve(item, max_delay)
            delay, rate = verdict[0], verdict[1]
            decided, expected, refusing = self.model.reserve(name, stamp, weight, max_delay)
            assert (item.timestamp, delay) == (stamp, expected)  # the caller's item is left as it was
            if refusing is None:
                assert rate is None
                assert recorded_at(item, verdict) == decided + delay
            else:
                assert rate is not None
                assert rates.index(rate) in refusing
                # What each rate had left at the decision, from the same step.
                left = tuple(max(r.limit - self.model.counted(decided, r), 0) for r in rates)
                assert verdict[2:] == (left,)

        @rule(name=NAMES, weight=weights)
        def put(self, name: str, weight: int) -> None:
            admitted = self.bucket.put(RateItem(name, self.now, weight))
            _, _, refusing = self.model.reserve(name, self.now, weight, None)
            assert admitted == (refusing is None)
            if refusing is not None:
                assert self.bucket.failing_rate is not None
                assert rates.index(self.bucket.failing_rate) in refusing

        @rule(name=NAMES, weight=weights, max_delay=delays)
        def reserve(self, name: str, weight: int, max_delay: int | None) -> None:
            self.check_reserve(name, self.now, weight, max_delay)

        @rule(name=NAMES, weight=st.integers(1, rates[-1].limit), lag=st.integers(1, 2 * longest + 2), max_delay=delays)
        def reserve_late(self, name: str, weight: int, lag: int, max_delay: int | None) -> None:
            # A caller whose clock lags. Where the decided time would hang on whether a trimmed item
            # of weight 0 was ever recorded (the backends differ, the rule is silent), skip it.
            if not self.model.ambiguous(self.now - lag):
                self.check_reserve(name, self.now - lag, weight, max_delay)

        @rule(weight=weights)
        def waiting(self, weight: int) -> None:
            assert self.bucket.waiting(RateItem("w", self.now, weight)) == self.model.waiting(self.now, weight)

        @rule(weight=weights)
        def state(self, weight: int) -> None:
            # What Limiter.state reads, and what an acquire at that instant then decides.
            assert self.bucket.state(RateItem("s", self.now, weight)) == self.model.state(self.now, weight)

        @rule(back=st.sampled_from([0, 0, 1, longest, longest + 1]))
        def leak(self, back: int) -> None:
            # At the clock's time, or at a slower one's: a leak never drops what can still count.
            assert self.bucket.leak(self.now - back) == self.model.trim(self.now - back - longest - 1)

        @precondition(lambda self: any(weight > 0 for _, weight, _ in self.model.items))
        @rule(data=st.data())
        def release(self, data: st.DataObject) -> None:
            stamp, weight, name = data.draw(st.sampled_from([item for item in self.model.items if item[1] > 0]))
            self.bucket.release(RateItem(name, stamp, weight))
            self.model.release(stamp, weight, name)

        @rule(step=steps)
        def advance(self, step: int) -> None:
            self.now += step

        @rule(index=st.integers(0, 12))
        def peek(self, index: int) -> None:
            unit = self.bucket.peek(index)
            assert (None if unit is None else (unit.name, unit.timestamp)) == self.model.peek(index)

        @invariant()
        def count_and_newest_agree(self) -> None:
            assert self.bucket.count() == self.model.count()
            newest = self.bucket.peek(0)
            assert (None if newest is None else (newest.name, newest.timestamp)) == self.model.peek(0)

    return BucketAgreesWithTheRule


# Intervals of seconds: a Redis bucket's keys expire after its longest interval plus a second of
# *real* time, and the stamps here stand still while the test runs.
@pytest.mark.parametrize("rates", [[Rate(5, 2000)], [Rate(3, 1000), Rate(5, 3000)]], ids=["one-rate", "two-rates"])
@pytest.mark.parametrize("kind", sorted(ATOMIC))
def test_bucket_agrees_with_the_closed_window_rule_at_every_step(
    kind: str, rates: list[Rate], request: pytest.FixtureRequest
) -> None:
    def make() -> AbstractBucket:
        return MAKERS[kind](rates, f"model-{uuid.uuid4().hex}", request)

    run_state_machine_as_test(machine_for(make, rates), settings=SETTINGS)
