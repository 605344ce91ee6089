"""The closed window at its edges, on every backend: an item stamped ``s`` counts through ``s + I``.

Every stamp is explicit (or comes from a hand-moved clock), so each test lands on the exact
millisecond where the old half-open rule and the closed one disagree.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from pyrate_limiter import AsyncLimiter, LimiterDelayException, Rate, RateItem

from ..fake_clock import T0, FakeClock

if TYPE_CHECKING:
    from pyrate_limiter import AsyncAbstractBucket

    from .conftest import AsyncCreateBucket

S = T0  # the stamp every test fills at: a realistic epoch in ms
I = 1000  # noqa: E741 - the interval, named as in the rule


async def fill(bucket: AsyncAbstractBucket, stamp: int, units: int) -> None:
    for _ in range(units):
        assert await bucket.put(RateItem("k", stamp))


async def newest_stamp(bucket: AsyncAbstractBucket) -> int:
    unit = await bucket.peek(0)
    assert unit is not None
    return unit.timestamp


# Any bucket, ours or a v3-style custom one.


async def test_full_bucket_refuses_at_s_plus_interval_and_admits_one_ms_later(create_bucket: AsyncCreateBucket) -> None:
    rate = Rate(5, I)
    bucket = await create_bucket([rate])
    await fill(bucket, S, 5)
    assert not await bucket.put(RateItem("k", S + I))
    assert bucket.failing_rate == rate
    assert await bucket.count() == 5
    assert await bucket.put(RateItem("k", S + I + 1))


async def test_waiting_counts_to_one_ms_past_the_interval(create_bucket: AsyncCreateBucket) -> None:
    bucket = await create_bucket([Rate(5, I)])
    await fill(bucket, S, 5)
    assert await bucket.waiting(RateItem("k", S + I - 100)) == 101
    assert await bucket.waiting(RateItem("k", S + I)) == 1
    assert await bucket.waiting(RateItem("k", S + I + 1)) == 0


async def test_leak_at_s_plus_longest_interval_keeps_the_item_and_one_ms_later_drops_it(
    create_bucket: AsyncCreateBucket,
) -> None:
    bucket = await create_bucket([Rate(2, 100), Rate(5, I)])
    assert await bucket.put(RateItem("k", S, weight=2))
    assert await bucket.leak(S + 101) == 0  # past the short window, still inside the long one
    assert await bucket.leak(S + I) == 0
    assert await bucket.count() == 2
    assert await bucket.leak(S + I + 1) == 2
    assert await bucket.count() == 0


# Our buckets: atomic reservations, restamping, and the limiter on top.


@pytest.mark.parametrize(
    ("offset", "refusing"),
    [
        (-1, "slow"),  # the fast rate frees its room 1 ms before the slow one
        (0, "either"),  # both free their room at the same millisecond
        (1, "fast"),  # the fast rate frees its room 1 ms after the slow one
    ],
)
async def test_several_rates_free_their_room_one_ms_after_their_own_interval(
    create_atomic_bucket: AsyncCreateBucket, offset: int, refusing: str
) -> None:
    fast, slow = Rate(2, 100), Rate(4, 300)
    bucket = await create_atomic_bucket([fast, slow])
    assert await bucket.put(RateItem("k", S, weight=2))  # frees the slow rate's room at S + 301
    second = S + 200 + offset  # frees the fast rate's room at S + 301 + offset
    assert await bucket.put(RateItem("k", second, weight=2))
    last_refused = S + 300 + max(offset, 0)
    assert await bucket.waiting(RateItem("k", S + 250)) == last_refused + 1 - (S + 250)
    assert await bucket.waiting(RateItem("k", last_refused)) == 1
    delay, rate = (await bucket.reserve(RateItem("k", last_refused), None))[:2]
    assert delay == 1
    assert rate in {"slow": [slow], "fast": [fast], "either": [fast, slow]}[refusing]
    assert await bucket.waiting(RateItem("k", last_refused + 1)) == 0
    assert await bucket.put(RateItem("k", last_refused + 1))
    assert not await bucket.put(RateItem("k", last_refused + 1, weight=2))  # the fast rate is full again


async def test_weights_free_their_room_on_neighbouring_milliseconds(create_atomic_bucket: AsyncCreateBucket) -> None:
    rate = Rate(5, I)
    bucket = await create_atomic_bucket([rate])
    assert await bucket.put(RateItem("k", S, weight=3))
    assert await bucket.put(RateItem("k", S + 1, weight=2))
    # At S + I + 1 only the weight-2 item still counts; at S + I + 2 nothing does.
    assert await bucket.waiting(RateItem("k", S + I, weight=1)) == 1
    assert await bucket.waiting(RateItem("k", S + I, weight=3)) == 1
    assert await bucket.waiting(RateItem("k", S + I, weight=4)) == 2
    assert await bucket.waiting(RateItem("k", S + I + 1, weight=4)) == 1
    assert not await bucket.put(RateItem("k", S + I, weight=1))
    assert not await bucket.put(RateItem("k", S + I + 1, weight=4))
    assert bucket.failing_rate == rate
    assert await bucket.put(RateItem("k", S + I + 1, weight=3))
    assert not await bucket.put(RateItem("k", S + I + 1, weight=1))  # full again: 2 + 3
    assert await bucket.put(RateItem("k", S + I + 2, weight=2))  # the weight-2 item's room is free


async def test_reservation_lands_exactly_one_ms_past_the_interval(create_atomic_bucket: AsyncCreateBucket) -> None:
    rate = Rate(2, I)
    bucket = await create_atomic_bucket([rate])
    await fill(bucket, S, 2)
    assert (await bucket.reserve(RateItem("early", S + I - 100), 100))[:2] == (101, rate)
    assert (await bucket.reserve(RateItem("late", S + I), 0))[:2] == (1, rate)
    assert await bucket.count() == 2  # refusals record nothing
    assert (await bucket.reserve(RateItem("early", S + I - 100), 101))[:2] == (101, None)
    assert await newest_stamp(bucket) == S + I + 1
    # The reservation counts through S + 2 I + 1: the next newcomer queues behind it.
    assert (await bucket.reserve(RateItem("late", S + I), 10 * I))[:2] == (1, None)
    assert await newest_stamp(bucket) == S + I + 1
    assert (await bucket.reserve(RateItem("last", S + I), 10 * I))[:2] == (I + 2, None)
    assert await newest_stamp(bucket) == S + 2 * I + 2
    assert await bucket.count() == 5


async def test_late_item_behind_a_trim_is_decided_at_newest_trimmed_plus_longest_plus_one(
    create_atomic_bucket: AsyncCreateBucket,
) -> None:
    fast, slow = Rate(2, 100), Rate(4, I)
    bucket = await create_atomic_bucket([fast, slow])
    assert await bucket.put(RateItem("a", S))
    assert await bucket.put(RateItem("b", S + 5))
    assert await bucket.put(RateItem("c", S + 1500))  # trims "a" and "b": the newest trimmed is S + 5
    assert await bucket.count() == 1
    floor = S + 5 + I + 1
    # Stamped where "b" would still count: judged and recorded at the floor instead, which the
    # verdict says; the item is left as it came.
    late = RateItem("d", S + 1003)
    assert await bucket.reserve(late, None) == (0, None, floor)
    assert late == RateItem("d", S + 1003)
    assert await bucket.peek(1) == RateItem("d", floor)
    # Its delay counts from the floor: "d" and "c" fill the fast window until floor + 100 + 1.
    later = RateItem("e", S + 1004)
    assert await bucket.reserve(later, I) == (101, None, floor + 101)
    assert await bucket.peek(1) == RateItem("e", floor + 101)
    # An item stamped at the floor itself is not moved; it waits for "d" and "e" to free the fast window.
    at_floor = RateItem("f", floor)
    assert (await bucket.reserve(at_floor, None))[:2] == (202, fast)
    assert await bucket.count() == 3


async def test_waiting_for_a_stamp_behind_a_trim_counts_from_that_stamp(
    create_atomic_bucket: AsyncCreateBucket,
) -> None:
    # The trim at S + 200 drops S: nothing is judged before S + 101, however the item is stamped.
    bucket = await create_atomic_bucket([Rate(2, 100)])
    assert await bucket.put(RateItem("a", S))
    assert await bucket.put(RateItem("b", S + 200))
    assert await bucket.waiting(RateItem("late", S + 50)) == 51  # fits at S + 101, the floor
    assert await bucket.waiting(RateItem("late", S + 50, 2)) == 251  # fits once b is out, at S + 301
    assert await bucket.waiting(RateItem("now", S + 200)) == 0


async def test_limiter_on_a_moved_clock_refuses_at_s_plus_interval_and_admits_one_ms_later(
    create_atomic_bucket: AsyncCreateBucket,
) -> None:
    bucket = await create_atomic_bucket([Rate(5, I)])
    clock = FakeClock(S)
    limiter = AsyncLimiter(bucket, clock=clock, raise_when_fail=False)
    assert [await limiter.try_acquire("k") for _ in range(6)] == [True] * 5 + [False]
    clock.advance(I)
    assert not await limiter.try_acquire("k")
    clock.advance(1)
    assert await limiter.try_acquire("k")
    assert await newest_stamp(bucket) == S + I + 1


async def test_limiter_on_a_moved_clock_waits_exactly_until_one_ms_past_the_interval(
    create_atomic_bucket: AsyncCreateBucket,
) -> None:
    bucket = await create_atomic_bucket([Rate(2, I)])
    clock = FakeClock(S)
    limiter = AsyncLimiter(bucket, clock=clock)
    assert await limiter.try_acquire("k", weight=2)
    clock.advance(I - 100)
    with pytest.raises(LimiterDelayException) as caught:
        await limiter.try_acquire("k", max_delay=100)
    assert caught.value.meta_info["actual_delay"] == 101
    clock.advance(100)
    with pytest.raises(LimiterDelayException) as caught:
        await limiter.try_acquire("k", max_delay=0)
    assert caught.value.meta_info["actual_delay"] == 1
    assert await limiter.try_acquire("k", max_delay=1)  # sleeps 1 ms of real time
    assert await newest_stamp(bucket) == S + I + 1
    assert await bucket.count() == 3


@pytest.mark.parametrize("epoch", [1_000_000, S, 4_000_000_000_000], ids=["1970", "2023", "2096"])
async def test_waiting_follows_the_limiters_clock_not_the_servers(create_bucket: AsyncCreateBucket, epoch: int) -> None:
    # The servers' clocks read 2026: a clock decades away from them still decides every wait.
    bucket = await create_bucket([Rate(3, I)])
    clock = FakeClock(epoch)
    limiter = AsyncLimiter(bucket, clock=clock)
    for _ in range(3):
        assert await limiter.try_acquire("k")
    clock.advance(400)
    item = await limiter.bucket_factory.wrap_item("k")
    assert item.timestamp == epoch + 400
    assert await bucket.waiting(item) == I + 1 - 400
    with pytest.raises(LimiterDelayException) as caught:
        await limiter.try_acquire("k", max_delay=100)
    assert caught.value.meta_info["actual_delay"] == I + 1 - 400
    clock.advance(I + 1 - 400)
    assert await bucket.waiting(await limiter.bucket_factory.wrap_item("k")) == 0
    assert await limiter.try_acquire("k", max_delay=None)
    assert await newest_stamp(bucket) == epoch + I + 1
