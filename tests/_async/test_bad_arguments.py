"""Bad arguments get the same clear error on every backend, and record nothing."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import pytest

from pyrate_limiter import AsyncLimiter, BucketFullException, Rate, RateItem

from ..fake_clock import T0, FakeClock

if TYPE_CHECKING:
    from .conftest import AsyncCreateBucket

HEAVY = [2**63, 10**30]  # beyond a 64-bit integer and beyond a double's exact range


@pytest.mark.parametrize(
    ("weight", "error", "message"),
    [(-1, ValueError, "weight must be >= 0"), (1.5, TypeError, "weight must be an int"), (True, TypeError, "weight")],
)
async def test_a_malformed_weight_is_refused_before_anything_is_recorded(
    create_atomic_bucket: AsyncCreateBucket, weight: Any, error: type[Exception], message: str
) -> None:
    bucket = await create_atomic_bucket([Rate(5, 1000)])
    limiter = AsyncLimiter(bucket, clock=FakeClock())
    with pytest.raises(error, match=message):
        await limiter.try_acquire("k", weight=weight)
    with pytest.raises(error, match=message):  # the bucket's own put, as v3 code calls it
        await bucket.put(RateItem("k", T0, weight))
    assert await bucket.count() == 0


@pytest.mark.parametrize("weight", HEAVY)
async def test_a_weight_beyond_every_limit_never_fits_on_any_backend(
    create_atomic_bucket: AsyncCreateBucket, weight: int
) -> None:
    rates = [Rate(5, 1000), Rate(10, 5000)]
    bucket = await create_atomic_bucket(rates)
    limiter = AsyncLimiter(bucket, clock=FakeClock(), max_delay=math.inf)
    with pytest.raises(BucketFullException):
        await limiter.try_acquire("k", weight=weight)
    assert (await bucket.reserve(RateItem("k", T0, weight), None))[:2] == (-1, rates[0])
    assert await bucket.waiting(RateItem("k", T0, weight)) == -1
    assert await bucket.count() == 0


@pytest.mark.parametrize(
    ("max_delay", "error"), [(math.nan, ValueError), (-1, ValueError), (-math.inf, ValueError), ("5", TypeError)]
)
async def test_a_bad_max_delay_is_refused_at_construction_and_at_the_call(
    create_atomic_bucket: AsyncCreateBucket, max_delay: Any, error: type[Exception]
) -> None:
    bucket = await create_atomic_bucket([Rate(1, 1000)])
    with pytest.raises(error, match="max_delay"):
        AsyncLimiter(bucket, clock=FakeClock(), max_delay=max_delay)
    limiter = AsyncLimiter(bucket, clock=FakeClock())
    assert await limiter.try_acquire("k")
    with pytest.raises(error, match="max_delay"):
        await limiter.try_acquire("k", max_delay=max_delay)
    assert await bucket.count() == 1


async def test_an_infinite_max_delay_waits_as_long_as_it_takes(create_atomic_bucket: AsyncCreateBucket) -> None:
    bucket = await create_atomic_bucket([Rate(1, 30)])
    limiter = AsyncLimiter(bucket, clock=FakeClock(), max_delay=math.inf)
    assert await limiter.try_acquire("k")
    assert await limiter.try_acquire("k")  # waits the 31 ms it needs
    assert await limiter.try_acquire("k", weight=1, max_delay=math.inf)
    newest = await bucket.peek(0)
    assert newest is not None
    assert newest.timestamp == T0 + 62


async def test_a_clock_that_tells_no_time_is_refused_clearly(create_atomic_bucket: AsyncCreateBucket) -> None:
    bucket = await create_atomic_bucket([Rate(5, 1000)])
    with pytest.raises(TypeError, match="clock"):
        AsyncLimiter(bucket, clock="x")

    class TextClock:
        def now(self) -> str:
            return str(T0)

    limiter = AsyncLimiter(bucket, clock=TextClock())
    with pytest.raises(TypeError, match="milliseconds"):
        await limiter.try_acquire("k")
    assert await bucket.count() == 0


BAD_NAMES = [
    ("a\0b", ValueError, "NUL"),
    ("\udc80", ValueError, "UTF-8"),
    (b"bytes", TypeError, "a name must be a str"),
    (None, TypeError, "a name must be a str"),
    (1.5, TypeError, "a name must be a str"),
    (["unhashable"], TypeError, "a name must be a str"),
]


@pytest.mark.parametrize(("name", "error", "message"), BAD_NAMES, ids=repr)
async def test_a_name_no_backend_can_keep_is_refused_on_every_backend(
    create_atomic_bucket: AsyncCreateBucket, name: Any, error: type[Exception], message: str
) -> None:
    # Every one of ours; a user's own bucket is guarded by the limiter alone (its put is its own).
    bucket = await create_atomic_bucket([Rate(5, 1000)])
    limiter = AsyncLimiter(bucket, clock=FakeClock())
    with pytest.raises(error, match=message):
        await limiter.try_acquire(name)
    with pytest.raises(error, match=message):
        await limiter.reserve(name)
    with pytest.raises(error, match=message):
        await bucket.put(RateItem(name, T0))
    assert await bucket.count() == 0


async def test_every_backend_takes_any_text_and_ints_as_names(create_atomic_bucket: AsyncCreateBucket) -> None:
    names: list[Any] = ["", "ü ' \" ; DROP TABLE x; --", "🚦" * 100, "\t\n", 5, -(2**70)]
    bucket = await create_atomic_bucket([Rate(len(names), 1000)])
    limiter = AsyncLimiter(bucket, clock=FakeClock(), raise_when_fail=False)
    assert [await limiter.try_acquire(name) for name in names] == [True] * len(names)
    found = [await bucket.peek(i) for i in range(len(names))]
    assert sorted(str(unit.name) for unit in found if unit is not None) == sorted(str(name) for name in names)
