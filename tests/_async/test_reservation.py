"""Reservations and ``with`` acquire on every backend: places held ahead, waited for, given back.

Stamps come from a hand-moved clock; only ``wait`` sleeps in real time, checked by brackets.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import pytest

from pyrate_limiter import AsyncLimiter, BucketFullException, LimiterDelayException, Rate, RateItem

from ..fake_clock import T0, FakeClock

if TYPE_CHECKING:
    from .conftest import AsyncCreateBucket

I = 1000  # noqa: E741 - the interval, named as in the rule


async def limiter_over(create: AsyncCreateBucket, rates: list[Rate], **options: Any) -> AsyncLimiter:
    return AsyncLimiter(await create(rates), clock=FakeClock(T0), **options)


async def test_a_reservation_holds_the_earliest_place_that_fits(create_atomic_bucket: AsyncCreateBucket) -> None:
    limiter = await limiter_over(create_atomic_bucket, [Rate(2, I)], max_delay=5 * I)
    now = await limiter.reserve("k")
    assert now is not None
    assert (now.at, now.delay_ms, now.weight) == (T0, 0, 1)
    later = await limiter.reserve("k", weight=1)
    after = await limiter.reserve("k", weight=2)
    assert later is not None
    assert after is not None
    assert (later.at, later.delay_ms) == (T0, 0)
    assert (after.at, after.delay_ms) == (T0 + I + 1, I + 1)  # both first places free, 1 ms past I
    (bucket,) = limiter.buckets()
    assert await bucket.count() == 4  # counted from the moment reserved
    assert not await bucket.put(RateItem("other", T0 + I + 1))


async def test_a_reservation_beyond_max_delay_is_refused_and_records_nothing(
    create_atomic_bucket: AsyncCreateBucket,
) -> None:
    limiter = await limiter_over(create_atomic_bucket, [Rate(1, I)], max_delay=100)
    assert await limiter.reserve("k") is not None
    with pytest.raises(LimiterDelayException) as caught:
        await limiter.reserve("k")
    assert caught.value.meta_info["actual_delay"] == I + 1
    with pytest.raises(BucketFullException):
        await limiter.reserve("k", max_delay=None)
    with pytest.raises(BucketFullException):
        await limiter.reserve("k", weight=2, max_delay=10 * I)  # never fits
    limiter.raise_when_fail = False
    assert await limiter.reserve("k") is None
    (bucket,) = limiter.buckets()
    assert await bucket.count() == 1


async def test_cancel_gives_back_a_place_whose_time_has_not_come(create_atomic_bucket: AsyncCreateBucket) -> None:
    limiter = await limiter_over(create_atomic_bucket, [Rate(1, I)], max_delay=10 * I)
    first = await limiter.reserve("k")
    ahead = await limiter.reserve("k")
    assert first is not None
    assert ahead is not None
    assert ahead.at == T0 + I + 1
    (bucket,) = limiter.buckets()
    assert await bucket.count() == 2
    await ahead.cancel()
    await ahead.cancel()  # twice: harmless
    assert await bucket.count() == 1
    again = await limiter.reserve("k")  # the next caller gets the place given back
    assert again is not None
    assert again.at == T0 + I + 1
    await first.cancel()  # its time has come: spent, nothing given back
    assert await bucket.count() == 2
    with pytest.raises(RuntimeError, match="cancelled"):
        await ahead.wait()


async def test_wait_sleeps_until_the_place_comes(
    create_atomic_bucket: AsyncCreateBucket,
) -> None:
    interval = 50
    limiter = await limiter_over(create_atomic_bucket, [Rate(1, interval)], max_delay=10 * interval)
    assert await limiter.reserve("k") is not None
    before = time.monotonic()
    waited = await limiter.reserve("k")
    assert waited is not None
    await waited.wait()
    assert time.monotonic() >= before + (interval + 1) / 1000
    await waited.wait()  # its time has come: at once
    (bucket,) = limiter.buckets()
    assert await bucket.count() == 2


async def test_with_acquire_enters_once_admitted_and_raises_on_refusal(create_atomic_bucket: AsyncCreateBucket) -> None:
    limiter = await limiter_over(create_atomic_bucket, [Rate(2, I)], raise_when_fail=False)
    (bucket,) = limiter.buckets()
    async with limiter.acquire("k", weight=2) as reservation:
        assert (reservation.at, reservation.weight) == (T0, 2)
        assert await bucket.count() == 2
    with pytest.raises(BucketFullException):  # whatever raise_when_fail says: the block never runs
        async with limiter.acquire("k"):
            pytest.fail("entered a refused block")
    with pytest.raises(LimiterDelayException):
        async with limiter.acquire("k", max_delay=10):
            pytest.fail("entered a refused block")
    limiter.bucket_factory.clock.advance(I + 1)  # type: ignore[attr-defined]
    with pytest.raises(ZeroDivisionError):
        async with limiter.acquire("k"):
            _ = 1 / 0
    assert await bucket.count() == 1  # the block's failure refunds nothing: the request was made
