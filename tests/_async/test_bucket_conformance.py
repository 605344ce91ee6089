"""What every bucket must do, ours or a user's: run with the ``create_bucket`` fixture."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from pyrate_limiter import Duration, Rate, RateItem
from pyrate_limiter._concurrency import AsyncTaskGroup

if TYPE_CHECKING:
    from .conftest import AsyncCreateBucket

T0 = 1_700_000_000_000  # a realistic epoch in ms; buckets must not assume small timestamps


async def test_put_admits_up_to_the_limit_then_refuses(create_bucket: AsyncCreateBucket) -> None:
    rate = Rate(3, Duration.SECOND)
    bucket = await create_bucket([rate])
    assert [await bucket.put(RateItem("k", T0 + i)) for i in range(4)] == [True, True, True, False]
    assert bucket.failing_rate == rate
    assert await bucket.count() == 3


async def test_heavy_item_is_admitted_whole_or_not_at_all(create_bucket: AsyncCreateBucket) -> None:
    bucket = await create_bucket([Rate(5, Duration.SECOND)])
    assert await bucket.put(RateItem("k", T0, weight=3))
    assert not await bucket.put(RateItem("k", T0 + 1, weight=3))
    assert await bucket.count() == 3
    assert await bucket.put(RateItem("k", T0 + 2, weight=2))
    assert await bucket.count() == 5


async def test_every_rate_is_checked(create_bucket: AsyncCreateBucket) -> None:
    fast, slow = Rate(2, 100), Rate(3, Duration.SECOND)
    bucket = await create_bucket([fast, slow])
    assert await bucket.put(RateItem("k", T0))
    assert await bucket.put(RateItem("k", T0))
    assert not await bucket.put(RateItem("k", T0 + 50))
    assert bucket.failing_rate == fast
    assert not await bucket.put(RateItem("k", T0 + 100))  # the items at T0 count through T0 + 100
    assert await bucket.put(RateItem("k", T0 + 101))
    assert not await bucket.put(RateItem("k", T0 + 200))
    assert bucket.failing_rate == slow
    assert not await bucket.put(RateItem("k", T0 + 1000))
    assert await bucket.put(RateItem("k", T0 + 1001))


async def test_an_item_frees_its_room_one_ms_after_its_interval(create_bucket: AsyncCreateBucket) -> None:
    # Stamped T0, it happened somewhere in [T0, T0 + 1): it counts through T0 + 1000 inclusive.
    bucket = await create_bucket([Rate(2, 1000)])
    assert await bucket.put(RateItem("k", T0))
    assert await bucket.put(RateItem("k", T0 + 10))
    assert not await bucket.put(RateItem("k", T0 + 1000))
    assert await bucket.put(RateItem("k", T0 + 1001))
    assert not await bucket.put(RateItem("k", T0 + 1010))
    assert await bucket.put(RateItem("k", T0 + 1011))


async def test_refused_put_records_nothing(create_bucket: AsyncCreateBucket) -> None:
    bucket = await create_bucket([Rate(4, 1000)])
    assert await bucket.put(RateItem("k", T0, weight=3))
    for weight in (2, 4, 5):
        assert not await bucket.put(RateItem("k", T0 + 1, weight=weight))
    assert await bucket.count() == 3
    assert await bucket.put(RateItem("k", T0 + 2))


async def test_count_and_peek_are_in_units_newest_first(create_bucket: AsyncCreateBucket) -> None:
    bucket = await create_bucket([Rate(10, 1000)])
    assert await bucket.put(RateItem("a", T0, weight=2))
    assert await bucket.put(RateItem("b", T0 + 5))
    assert await bucket.count() == 3
    newest, middle, oldest = [await bucket.peek(i) for i in range(3)]
    assert newest is not None
    assert (newest.name, newest.timestamp) == ("b", T0 + 5)
    assert middle is not None
    assert (middle.name, middle.timestamp) == ("a", T0)
    assert oldest is not None
    assert (oldest.name, oldest.timestamp) == ("a", T0)
    assert await bucket.peek(3) is None


async def test_leak_drops_only_items_outside_the_longest_window(create_bucket: AsyncCreateBucket) -> None:
    bucket = await create_bucket([Rate(5, 100), Rate(10, 1000)])
    assert await bucket.put(RateItem("k", T0, weight=2))
    assert await bucket.put(RateItem("k", T0 + 500))
    assert await bucket.leak(T0 + 1000) == 0  # still counts at T0 + 1000
    assert await bucket.leak(T0 + 1001) == 2
    assert await bucket.count() == 1
    assert await bucket.leak(T0 + 5000) == 1
    assert await bucket.count() == 0


async def test_flush_forgets_everything(create_bucket: AsyncCreateBucket) -> None:
    bucket = await create_bucket([Rate(2, 1000)])
    assert await bucket.put(RateItem("k", T0, weight=2))
    assert not await bucket.put(RateItem("k", T0))
    await bucket.flush()
    assert await bucket.count() == 0
    assert await bucket.put(RateItem("k", T0, weight=2))


async def test_waiting_is_the_time_until_the_item_fits(create_bucket: AsyncCreateBucket) -> None:
    bucket = await create_bucket([Rate(3, 1000)])
    assert await bucket.waiting(RateItem("k", T0, weight=2)) == 0
    assert await bucket.put(RateItem("k", T0, weight=2))
    assert await bucket.put(RateItem("k", T0 + 300))
    assert await bucket.waiting(RateItem("k", T0 + 400)) == 601
    assert await bucket.waiting(RateItem("k", T0 + 400, weight=3)) == 901
    assert await bucket.waiting(RateItem("k", T0 + 1000)) == 1
    assert await bucket.waiting(RateItem("k", T0 + 1001)) == 0
    assert await bucket.waiting(RateItem("k", T0 + 400, weight=4)) == -1


async def test_reserve_records_at_the_earliest_time_within_max_delay(create_bucket: AsyncCreateBucket) -> None:
    rate = Rate(2, 1000)
    bucket = await create_bucket([rate])
    assert (await bucket.reserve(RateItem("k", T0), None))[:2] == (0, None)
    assert (await bucket.reserve(RateItem("k", T0 + 100), None))[:2] == (0, None)
    assert (await bucket.reserve(RateItem("k", T0 + 200), 800))[:2] == (801, rate)
    assert await bucket.count() == 2
    assert (await bucket.reserve(RateItem("k", T0 + 200), 801))[:2] == (801, None)
    assert await bucket.count() == 3
    newest = await bucket.peek(0)
    assert newest is not None
    assert newest.timestamp == T0 + 1001


async def test_item_heavier_than_a_limit_never_fits_and_takes_nothing(create_bucket: AsyncCreateBucket) -> None:
    small, big = Rate(3, 1000), Rate(10, Duration.MINUTE)
    bucket = await create_bucket([small, big])
    assert (await bucket.reserve(RateItem("k", T0, weight=4), Duration.HOUR))[:2] == (-1, small)
    assert await bucket.count() == 0


async def test_unordered_or_empty_rates_are_refused_at_construction(create_bucket: AsyncCreateBucket) -> None:
    for rates in ([], [Rate(10, 1000), Rate(5, 2000)], [Rate(5, 2000), Rate(10, 1000)]):
        with pytest.raises(ValueError, match="rates"):
            await create_bucket(rates)


async def test_concurrent_puts_never_exceed_the_limit(create_bucket: AsyncCreateBucket) -> None:
    bucket = await create_bucket([Rate(7, Duration.MINUTE)])
    admitted: list[int] = []

    async def worker(i: int) -> None:
        weight = 1 + i % 2
        if await bucket.put(RateItem("k", T0 + i % 3, weight=weight)):
            admitted.append(weight)

    async with AsyncTaskGroup() as tasks:
        for i in range(30):
            tasks.start_soon(worker, i)
    # Weight-1 items keep coming after the bucket holds 6, so it ends exactly full.
    assert sum(admitted) == await bucket.count() == 7


# Below: only buckets with an atomic reservation (ours); a v3-style custom bucket has none.


async def test_reservations_queue_first_in_first_out(create_atomic_bucket: AsyncCreateBucket) -> None:
    bucket = await create_atomic_bucket([Rate(2, 1000)])
    assert (await bucket.reserve(RateItem("k", T0, weight=2), None))[:2] == (0, None)
    assert (await bucket.reserve(RateItem("first", T0 + 10, weight=2), 5000))[:2] == (991, None)
    # A light newcomer may not jump the queue into the window the first waiter owns.
    assert (await bucket.reserve(RateItem("second", T0 + 20), 5000))[:2] == (1982, None)
    assert (await bucket.reserve(RateItem("now", T0 + 30), None))[:2] == (1972, Rate(2, 1000))


async def test_released_reservation_frees_its_place(create_atomic_bucket: AsyncCreateBucket) -> None:
    bucket = await create_atomic_bucket([Rate(2, 1000)])
    assert (await bucket.reserve(RateItem("k", T0, weight=2), None))[:2] == (0, None)
    assert (await bucket.reserve(RateItem("gone", T0 + 10, weight=2), 5000))[:2] == (991, None)
    await bucket.release(RateItem("gone", T0 + 1001, weight=2))
    assert await bucket.count() == 2
    assert (await bucket.reserve(RateItem("next", T0 + 20), 5000))[:2] == (981, None)


async def test_cost_of_a_put_does_not_grow_with_weight(create_atomic_bucket: AsyncCreateBucket) -> None:
    bucket = await create_atomic_bucket([Rate(10**6, Duration.HOUR)])
    assert await bucket.put(RateItem("k", T0, weight=10**6))
    assert await bucket.count() == 10**6
    assert not await bucket.put(RateItem("k", T0 + 1))
    newest = await bucket.peek(10**6 - 1)
    assert newest is not None
    assert newest.timestamp == T0
