"""The limiter's policy: raise, return False or wait; bad input; decorators; concurrency."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pytest

from pyrate_limiter import (
    AsyncBucketFactory,
    AsyncInMemoryBucket,
    AsyncLimiter,
    AsyncTimeClock,
    BucketFullException,
    Duration,
    LimiterDelayException,
    Rate,
    RateItem,
)
from pyrate_limiter._concurrency import AsyncTaskGroup

from ..fake_clock import FakeClock

if TYPE_CHECKING:
    from pyrate_limiter import AsyncAbstractBucket


def make_limiter(*rates: Rate, **kwargs: object) -> tuple[AsyncLimiter, FakeClock]:
    clock = FakeClock()
    return AsyncLimiter(list(rates), clock=clock, **kwargs), clock  # type: ignore[arg-type,unused-ignore]


async def test_full_bucket_raises_with_the_documented_meta_info() -> None:
    limiter, _ = make_limiter(Rate(5, Duration.SECOND * 2))
    for _ in range(5):
        assert await limiter.try_acquire(5)  # type: ignore[arg-type]  # v3 allows any name
    with pytest.raises(BucketFullException) as caught:
        await limiter.try_acquire(5)  # type: ignore[arg-type]
    message = "Bucket for item=5 with Rate limit=5/2.0s is already full"
    assert str(caught.value) == message
    v3 = {"error": message, "name": 5, "weight": 1, "rate": "limit=5/2.0s"}
    assert caught.value.meta_info == {**v3, "retry_after_ms": 2001, "remaining": (0,)}  # v3's keys, then ours


async def test_full_bucket_returns_false_when_not_raising() -> None:
    limiter, clock = make_limiter(Rate(2, 1000), raise_when_fail=False)
    assert [await limiter.try_acquire("k") for _ in range(3)] == [True, True, False]
    clock.advance(1000)
    assert not await limiter.try_acquire("k")  # the first two count through their stamp + 1000
    clock.advance(1)
    assert await limiter.try_acquire("k")


async def test_too_long_a_wait_raises_delay_exception_with_the_exact_delay() -> None:
    limiter, clock = make_limiter(Rate(3, 1000), max_delay=200)
    assert await limiter.try_acquire("item", weight=2)
    clock.advance(100)
    with pytest.raises(LimiterDelayException) as caught:
        await limiter.try_acquire("item", weight=2)
    assert caught.value.meta_info == {
        "name": "item",
        "weight": 2,
        "rate": "limit=3/1.0s",
        "max_delay": 200,
        "actual_delay": 901,
        "retry_after_ms": 901,
        "remaining": (1,),
    }
    assert str(caught.value).startswith("Actual delay exceeded allowance: actual=901, allowed=200")


async def test_per_call_max_delay_overrides_the_limiter() -> None:
    limiter, _ = make_limiter(Rate(1, 1000), raise_when_fail=False)
    assert await limiter.try_acquire("k")
    assert not await limiter.try_acquire("k", max_delay=999)
    limiter.max_delay = 5000
    assert not await limiter.try_acquire("k", max_delay=None)


async def test_allowed_wait_is_exact_and_admits_after_sleeping() -> None:
    limiter = AsyncLimiter(Rate(2, 300), max_delay=1000)
    started = time.monotonic()
    for _ in range(4):
        assert await limiter.try_acquire("k")
    elapsed = time.monotonic() - started
    # The 3rd and 4th wait for the window to slide by 300 ms; generous upper margin.
    assert 0.29 <= elapsed < 2.0


async def test_wait_is_allowed_when_it_equals_max_delay() -> None:
    limiter, _ = make_limiter(Rate(1, 50), max_delay=51)  # room frees 51 ms after the first
    assert await limiter.try_acquire("k")
    assert await limiter.try_acquire("k")


async def test_weight_above_a_limit_fails_at_once_even_with_delays_allowed() -> None:
    bucket = AsyncInMemoryBucket([Rate(3, 1000)])
    limiter = AsyncLimiter(bucket, clock=FakeClock(), max_delay=Duration.HOUR)
    with pytest.raises(BucketFullException):
        await limiter.try_acquire("k", weight=4)
    assert await bucket.count() == 0
    quiet = AsyncLimiter(bucket, clock=FakeClock(), max_delay=Duration.HOUR, raise_when_fail=False)
    assert not await quiet.try_acquire("k", weight=4)
    assert await bucket.count() == 0


@pytest.mark.parametrize(("weight", "error"), [(-1, ValueError), (1.5, TypeError), ("2", TypeError), (True, TypeError)])
async def test_bad_weight_is_refused_and_records_nothing(weight: object, error: type[Exception]) -> None:
    bucket = AsyncInMemoryBucket([Rate(3, 1000)])
    limiter = AsyncLimiter(bucket)
    with pytest.raises(error, match="weight"):
        await limiter.try_acquire("k", weight=weight)  # type: ignore[arg-type]
    assert await bucket.count() == 0


async def test_negative_max_delay_is_refused() -> None:
    with pytest.raises(ValueError, match="max_delay"):
        AsyncLimiter(Rate(1, 1000), max_delay=-1)
    limiter = AsyncLimiter(Rate(1, 1000))
    with pytest.raises(ValueError, match="max_delay"):
        await limiter.try_acquire("k", max_delay=-5)


@pytest.mark.parametrize("rates", [[], [Rate(10, 1000), Rate(5, 2000)], [Rate(5, 2000), Rate(10, 1000)]])
async def test_unordered_or_empty_rates_are_refused(rates: list[Rate]) -> None:
    with pytest.raises(ValueError, match="rates"):
        AsyncLimiter(rates)


async def test_weight_zero_is_always_admitted() -> None:
    limiter, _ = make_limiter(Rate(1, 1000))
    assert await limiter.try_acquire("k")
    assert await limiter.try_acquire("k", weight=0)


async def test_decorator_admits_calls_and_never_runs_refused_ones() -> None:
    limiter, _ = make_limiter(Rate(2, 1000))
    calls: list[int] = []

    @limiter.as_decorator()(lambda n: ("key", n))
    async def heavy(n: int) -> int:
        calls.append(n)
        return n * 10

    @limiter.as_decorator()(lambda n: "key")
    def light(n: int) -> int:
        calls.append(n)
        return n

    assert await heavy(1) == 10
    assert await light(2) == 2
    with pytest.raises(BucketFullException):
        await heavy(1)
    assert calls == [1, 2]


async def test_decorator_returns_none_without_calling_when_not_raising() -> None:
    limiter, _ = make_limiter(Rate(1, 1000), raise_when_fail=False)
    calls: list[str] = []

    @limiter.as_decorator()(lambda: "k")
    async def work() -> str:
        calls.append("ran")
        return "done"

    assert await work() == "done"
    assert await work() is None
    assert calls == ["ran"]


@pytest.mark.parametrize("mapped", [3, ("k",), ("k", 1, 2), [("k", 1)], None])
async def test_decorator_mapping_must_return_a_name_or_name_and_weight(mapped: object) -> None:
    limiter, _ = make_limiter(Rate(5, 1000))

    @limiter.as_decorator()(lambda: mapped)
    async def work() -> None:
        raise AssertionError("must not run")

    with pytest.raises(TypeError, match="mapping"):
        await work()


async def test_concurrent_acquires_never_exceed_the_limit() -> None:
    limiter, _ = make_limiter(Rate(5, Duration.HOUR), raise_when_fail=False)
    results: list[bool] = []

    async def worker() -> None:
        results.append(await limiter.try_acquire("k"))

    async with AsyncTaskGroup() as tasks:
        for _ in range(40):
            tasks.start_soon(worker)
    assert results.count(True) == 5


async def test_concurrent_waiters_are_admitted_in_windows_that_never_overflow() -> None:
    rate = Rate(3, 200)
    bucket = AsyncInMemoryBucket([rate])
    limiter = AsyncLimiter(bucket, max_delay=5000)
    started = time.monotonic()

    async def worker() -> None:
        assert await limiter.try_acquire("k")

    async with AsyncTaskGroup() as tasks:
        for _ in range(9):
            tasks.start_soon(worker)
    # Nine items, three per window: the last ones cannot have been admitted before two windows.
    assert time.monotonic() - started >= 2 * rate.interval / 1000 - 0.01
    stamps = sorted([unit.timestamp for unit in [await bucket.peek(i) for i in range(9)] if unit is not None])
    assert len(stamps) == 9
    for first, fourth in zip(stamps, stamps[3:], strict=False):
        assert fourth - first >= rate.interval


class RoutingFactory(AsyncBucketFactory):
    """One bucket per name, made on first use: the spec's MultiBucketFactory."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.buckets: dict[str, AsyncAbstractBucket] = {}

    async def wrap_item(self, name: str, weight: int = 1) -> RateItem:
        return RateItem(name, self.clock.now(), weight=weight)

    async def get(self, item: RateItem) -> AsyncAbstractBucket:
        if item.name not in self.buckets:
            self.buckets[item.name] = self.create(self.clock, AsyncInMemoryBucket, [Rate(2, 1000)])
        return self.buckets[item.name]


async def test_factory_routes_each_name_to_its_own_bucket() -> None:
    factory = RoutingFactory(FakeClock())
    limiter = AsyncLimiter(factory, raise_when_fail=False)
    assert [await limiter.try_acquire(name) for name in "aabbab"] == [True, True, True, True, False, False]
    assert len(factory.get_buckets()) == 2
    await limiter.aclose()


async def test_a_subclassed_clock_is_asked_not_bypassed() -> None:
    class FrozenClock(AsyncTimeClock):
        async def now(self) -> int:
            return 42

    bucket = AsyncInMemoryBucket([Rate(1, 1000)])
    limiter = AsyncLimiter(bucket, clock=FrozenClock())
    assert await limiter.try_acquire("k")
    newest = await bucket.peek(0)
    assert newest is not None
    assert newest.timestamp == 42
