"""``pause``: server feedback that holds a name back, on every backend, for new callers and waiting ones.

The arithmetic is checked with an injected clock at the bucket and the limiter; the promise
(nothing admitted before the pause ends, waiters included) in real time, with the monotonic
readings around each call.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import pytest

from pyrate_limiter import (
    AsyncInMemoryBucket,
    AsyncLimiter,
    BucketFullException,
    LimiterDelayException,
    Rate,
    RateItem,
)
from pyrate_limiter._concurrency import AsyncTaskGroup, asleep
from tests.realtime import NS_PER_MS, realtime_problems

from ..fake_clock import T0, FakeClock
from .recording import acquire, recording_limiter

if TYPE_CHECKING:
    from pyrate_limiter import AsyncReservation
    from tests.realtime import Call

    from .conftest import AsyncCreateBucket


I = 1000  # noqa: E741 - the interval, named as in the rule
RATES = [Rate(3, I), Rate(5, 5 * I)]


async def test_a_pause_holds_back_an_item_that_would_fit(create_bucket: AsyncCreateBucket) -> None:
    bucket = await create_bucket(RATES)
    assert await bucket.paused_until("k") == 0
    assert await bucket.pause_until("k", T0 + 500) == T0 + 500
    assert await bucket.paused_until("k") == T0 + 500
    assert await bucket.waiting(RateItem("k", T0, 1)) == 500
    assert (await bucket.state(RateItem("k", T0, 1)))[0] == 500
    # No wait allowed, or too short a one: refused by the pause alone, and nothing recorded.
    assert (await bucket.reserve(RateItem("k", T0, 1), None))[:2] == (500, RATES[0])
    assert (await bucket.reserve(RateItem("k", T0, 1), 499))[:2] == (500, RATES[0])
    assert await bucket.count() == 0
    # Long enough a wait: the place is the pause's end, counted from the item's own stamp.
    item = RateItem("k", T0, 1)
    assert (await bucket.reserve(item, 500))[:2] == (0 + 500, None)
    assert item.timestamp == T0
    assert (await bucket.peek(0)).timestamp == T0 + 500  # type: ignore[union-attr]
    # From its end on, items go in by the rule as before.
    assert (await bucket.reserve(RateItem("k", T0 + 500, 2), None))[:2] == (0, None)
    assert (await bucket.reserve(RateItem("k", T0 + 600, 1), None))[:2] == (I + 1 - 100, RATES[0])


async def test_a_shorter_pause_never_shortens_a_longer_one(create_bucket: AsyncCreateBucket) -> None:
    bucket = await create_bucket(RATES)
    assert await bucket.pause_until("k", T0 + 900) == T0 + 900
    assert await bucket.pause_until("k", T0 + 100) == T0 + 900
    assert await bucket.paused_until("k") == T0 + 900
    assert (await bucket.reserve(RateItem("k", T0 + 200, 1), None))[:2] == (700, RATES[0])


async def test_a_rate_that_frees_later_than_the_pause_ends_decides(create_bucket: AsyncCreateBucket) -> None:
    bucket = await create_bucket(RATES)
    for _ in range(3):
        assert (await bucket.reserve(RateItem("k", T0, 1), None))[:2] == (0, None)
    await bucket.pause_until("k", T0 + 300)
    # The first rate frees its room at T0 + I + 1, after the pause: its wait, and it is the rate named.
    assert (await bucket.reserve(RateItem("k", T0 + 100, 1), None))[:2] == (I + 1 - 100, RATES[0])
    assert (await bucket.reserve(RateItem("k", T0 + 100, 1), I))[:2] == (I + 1 - 100, None)


async def test_a_pause_outlives_the_leak_until_it_ends(create_atomic_bucket: AsyncCreateBucket) -> None:
    bucket = await create_atomic_bucket(RATES)
    assert (await bucket.reserve(RateItem("k", T0, 1), None))[:2] == (0, None)
    await bucket.pause_until("k", T0 + 100 * I)
    await bucket.leak(T0 + 50 * I)  # everything recorded is past counting: the pause is not
    assert (await bucket.reserve(RateItem("k", T0 + 60 * I, 1), None))[:2] == (40 * I, RATES[0])
    assert (await bucket.reserve(RateItem("k", T0 + 100 * I, 1), None))[:2] == (0, None)


async def test_flush_forgets_the_pause(create_atomic_bucket: AsyncCreateBucket) -> None:
    bucket = await create_atomic_bucket(RATES)
    await bucket.pause_until("k", T0 + 10 * I)
    await bucket.flush()
    assert await bucket.paused_until("k") == 0
    assert (await bucket.reserve(RateItem("k", T0, 1), None))[:2] == (0, None)


@pytest.mark.parametrize(
    ("until", "error"),
    [(-1, ValueError), (2**62 + 1, ValueError), (1.5, TypeError), (True, TypeError), ("1", TypeError)],
)
async def test_a_pause_that_ends_at_no_time_is_refused(
    create_atomic_bucket: AsyncCreateBucket, until: Any, error: type[Exception]
) -> None:
    bucket = await create_atomic_bucket(RATES)
    with pytest.raises(error, match="pause ends"):
        await bucket.pause_until("k", until)
    assert await bucket.paused_until("k") == 0


async def test_the_limiter_pauses_for_ms_from_its_clock(create_bucket: AsyncCreateBucket) -> None:
    clock = FakeClock(T0)
    limiter = AsyncLimiter(await create_bucket(RATES), clock=clock)
    assert await limiter.pause("k", 500) == T0 + 500
    assert await limiter.pause("k", 0.2) == T0 + 500  # shorter: the longer stays
    assert (await limiter.state("k")).retry_after_ms == 500
    with pytest.raises(BucketFullException) as refused:
        await limiter.try_acquire("k")
    assert refused.value.retry_after_ms == 500
    with pytest.raises(LimiterDelayException):
        await limiter.try_acquire("k", max_delay=100)
    assert await bucket_count(limiter) == 0
    clock.advance(500)
    assert await limiter.try_acquire("k")
    assert await limiter.pause_until("k", T0 + 2 * I) == T0 + 2 * I
    assert (await limiter.state("k")).retry_after_ms == 2 * I - 500


@pytest.mark.parametrize(
    ("ms", "error"),
    [
        (-1, ValueError),
        (math.nan, ValueError),
        (math.inf, ValueError),
        ("5", TypeError),
        (None, TypeError),
        (True, TypeError),
    ],
)
async def test_a_pause_of_no_length_is_refused(ms: Any, error: type[Exception]) -> None:
    limiter = AsyncLimiter(Rate(1, I), clock=FakeClock(T0))
    with pytest.raises(error):
        await limiter.pause("k", ms)
    with pytest.raises(TypeError):
        await limiter.pause(b"k", 10)  # type: ignore[arg-type]
    assert await limiter.try_acquire("k")


async def test_per_key_pauses_one_name_alone() -> None:
    clock = FakeClock(T0)
    limiter = AsyncLimiter.per_key([Rate(2, I)], clock=clock, raise_when_fail=False)
    (bucket,) = limiter.buckets()
    await limiter.pause("a", 3 * I)
    assert not await limiter.try_acquire("a")
    assert await limiter.try_acquire("b")
    clock.advance(2 * I)
    await bucket.leak(clock.now())  # "a" holds nothing, but its pause: its log stays
    assert not await limiter.try_acquire("a")
    clock.advance(I)
    assert await limiter.try_acquire("a")
    clock.advance(10 * I)
    await bucket.leak(clock.now())
    assert bucket.keys() == 0  # type: ignore[attr-defined]


async def test_a_per_key_factory_keeps_a_paused_bucket_past_its_idle_time() -> None:
    clock = FakeClock(T0)
    limiter = AsyncLimiter.per_key([Rate(2, I)], lambda name, rates: AsyncInMemoryBucket(rates), clock=clock)
    await limiter.pause("a", 10 * I)
    clock.advance(5 * I)
    await limiter.bucket_factory._leak_all()  # the bucket is idle past its interval, but paused
    with pytest.raises(BucketFullException) as refused:
        await limiter.try_acquire("a")
    assert refused.value.retry_after_ms == 5 * I


async def bucket_count(limiter: AsyncLimiter) -> int:
    (bucket,) = limiter.buckets()
    return await bucket.count()


# -- in real time: on the monotonic clock, every call bracketed ------------------------------

REAL = [Rate(2, 300)]
PAUSE_MS = 700


async def test_waiters_queued_before_a_pause_are_admitted_only_after_it(
    create_atomic_bucket: AsyncCreateBucket,
) -> None:
    limiter, recording = recording_limiter(await create_atomic_bucket(REAL))
    calls: list[Call] = []
    assert await limiter.try_acquire("first", max_delay=None)
    assert await limiter.try_acquire("second", max_delay=None)
    ends: list[int] = []
    async with AsyncTaskGroup() as tasks:
        for n, spelling in enumerate(["try_acquire", "acquire", "try_acquire"]):
            tasks.start_soon(acquire, limiter, recording, f"waiter-{n}", 1, 5000, calls, spelling)
        await asleep(0.05)  # they have their places, in the next window: then the server says wait
        ends.append(await limiter.pause("waiter-0", PAUSE_MS))
    assert len(calls) == 3
    assert all(call.admitted for call in calls)
    for call in calls:
        assert call.after // NS_PER_MS >= ends[0], call  # returned no earlier than the pause's end
        assert recording.stored[call.name] >= ends[0]  # and its place is behind it
    assert not realtime_problems(calls, REAL)


async def test_an_admission_moved_behind_a_pause_hands_back_its_new_place(
    create_atomic_bucket: AsyncCreateBucket,
) -> None:
    limiter, recording = recording_limiter(await create_atomic_bucket(REAL))
    assert await limiter.try_acquire("first", 2, max_delay=None)
    places: list[AsyncReservation] = []

    async def admit() -> None:
        async with limiter.acquire("waiter", 1, max_delay=5000) as place:
            places.append(place)

    async with AsyncTaskGroup() as tasks:
        tasks.start_soon(admit)
        await asleep(0.05)  # it has its place, in the next window: then the server says wait
        end = await limiter.pause("waiter", PAUSE_MS)
    (place,) = places
    assert place.at == recording.stored["waiter"] >= end


async def test_a_waiter_moved_past_its_max_delay_is_refused_and_leaves_nothing(
    create_atomic_bucket: AsyncCreateBucket,
) -> None:
    bucket = await create_atomic_bucket(REAL)
    limiter, recording = recording_limiter(bucket)
    calls: list[Call] = []
    # One item of weight 2, not two: on a slower backend two land ms apart, and the second
    # still counts when the waiter wakes at the first's end.
    assert await limiter.try_acquire("first", 2, max_delay=None)
    async with AsyncTaskGroup() as tasks:
        tasks.start_soon(acquire, limiter, recording, "waiter", 1, 400, calls, "try_acquire")
        await asleep(0.05)
        await limiter.pause("waiter", 10 * PAUSE_MS)
    (call,) = calls
    assert not call.admitted
    assert (call.after - call.before) // NS_PER_MS < 10 * PAUSE_MS  # refused as it woke, not after the pause
    # The first units no longer count: the place the waiter had would, had it not been given back.
    assert (await limiter.state("later")).rates[0].used == 0


async def test_a_pause_holds_new_callers_in_real_time(create_atomic_bucket: AsyncCreateBucket) -> None:
    limiter, recording = recording_limiter(await create_atomic_bucket(REAL))
    calls: list[Call] = []
    end = await limiter.pause("k", 200)
    await acquire(limiter, recording, "k", 1, 1000, calls)
    (call,) = calls
    assert call.admitted
    assert call.after // NS_PER_MS >= end
    assert recording.stored["k"] == end
