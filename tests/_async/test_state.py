"""``Limiter.state``: where a name stands against each rate, on every backend, spending nothing."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from pyrate_limiter import (
    AsyncKeyedBucket,
    AsyncLimiter,
    BucketFullException,
    LimiterDelayException,
    LimitState,
    Rate,
    RateState,
)

from ..fake_clock import T0, FakeClock

if TYPE_CHECKING:
    from .conftest import AsyncCreateBucket

I = 1000  # noqa: E741 - the interval, named as in the rule
RATES = [Rate(3, I), Rate(5, 5 * I)]


async def test_state_reads_every_rate_and_spends_nothing(create_bucket: AsyncCreateBucket) -> None:
    clock = FakeClock(T0)
    bucket = await create_bucket(RATES)
    limiter = AsyncLimiter(bucket, clock=clock, raise_when_fail=False)
    assert await limiter.state("k") == LimitState(0, (RateState(RATES[0], 0, 3, 0), RateState(RATES[1], 0, 5, 0)))
    assert await limiter.try_acquire("k", weight=2)
    clock.advance(100)
    assert await limiter.try_acquire("k")
    clock.advance(100)
    # The two stamped T0 free their room at T0 + I + 1: 801 ms from now, under both rates.
    expected = LimitState(801, (RateState(RATES[0], 3, 0, 801), RateState(RATES[1], 3, 2, 5 * I + 1 - 200)))
    assert await limiter.state("k") == expected
    assert await limiter.state("k") == expected  # asking twice changes nothing
    assert await bucket.count() == 3
    assert (await limiter.state("k", weight=6)).retry_after_ms is None  # heavier than every limit
    assert (await limiter.state("k", weight=0)).retry_after_ms == 0
    clock.advance(801)
    after = await limiter.state("k")
    assert after.retry_after_ms == 0
    assert after.rates[0] == RateState(RATES[0], 1, 2, 100 + I + 1 - 1001)
    assert await limiter.try_acquire("k")  # what state said: it fits now


async def test_state_agrees_with_try_acquire_at_the_same_instant(create_atomic_bucket: AsyncCreateBucket) -> None:
    clock = FakeClock(T0)
    limiter = AsyncLimiter(await create_atomic_bucket(RATES), clock=clock, raise_when_fail=False)
    for step, weight in [(0, 1), (0, 2), (0, 1), (300, 1), (700, 2), (1, 1), (2000, 3), (0, 1), (5001, 2)]:
        clock.advance(step)
        state = await limiter.state("k", weight)
        admitted = await limiter.try_acquire("k", weight, max_delay=None)
        assert admitted == (state.retry_after_ms == 0)
        assert admitted == all(rate.remaining >= weight for rate in state.rates)


async def test_per_key_state_of_an_unseen_name_makes_no_log() -> None:
    limiter = AsyncLimiter.per_key([Rate(2, I)], clock=FakeClock(T0))
    (bucket,) = limiter.buckets()
    assert isinstance(bucket, AsyncKeyedBucket)
    state = await limiter.state("never-seen")
    assert state == LimitState(0, (RateState(Rate(2, I), 0, 2, 0),))
    assert bucket.keys() == 0


async def test_a_refusal_carries_the_wait_its_decision_found(create_atomic_bucket: AsyncCreateBucket) -> None:
    left = (0, 2)  # what each rate has left, from the same decision
    limiter = AsyncLimiter(await create_atomic_bucket(RATES), clock=FakeClock(T0))
    for _ in range(3):
        assert await limiter.try_acquire("k")
    with pytest.raises(BucketFullException) as full:
        await limiter.try_acquire("k")
    assert full.value.retry_after_ms == I + 1
    assert full.value.remaining == left  # both rates, from the same decision
    info = full.value.meta_info
    assert list(info) == ["error", "name", "weight", "rate", "retry_after_ms", "remaining"]  # v3's keys first
    assert (info["retry_after_ms"], info["remaining"]) == (I + 1, left)
    with pytest.raises(BucketFullException) as never:
        await limiter.try_acquire("k", weight=6)
    assert never.value.retry_after_ms is None
    with pytest.raises(LimiterDelayException) as delayed:
        await limiter.try_acquire("k", max_delay=10)
    assert delayed.value.retry_after_ms == delayed.value.actual_delay == I + 1
    assert delayed.value.remaining == left
