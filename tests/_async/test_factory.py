"""The factory's leak housekeeping and lifecycle: it runs, it stops, nothing is left behind."""

from __future__ import annotations

import threading
import time

from pyrate_limiter import AsyncBucketFactory, AsyncInMemoryBucket, AsyncLimiter, Duration, Rate, RateItem
from pyrate_limiter._concurrency import asleep

from ..fake_clock import FakeClock


class OneBucket(AsyncBucketFactory):
    """The spec's minimal factory, with the suggested constructor scheduling the leak."""

    def __init__(self, clock: FakeClock, bucket: AsyncInMemoryBucket) -> None:
        self.clock = clock
        self.bucket = bucket
        self.leak_interval = 20
        self.schedule_leak(bucket, clock)

    async def wrap_item(self, name: str, weight: int = 1) -> RateItem:
        return RateItem(name, self.clock.now(), weight=weight)

    async def get(self, item: RateItem) -> AsyncInMemoryBucket:
        return self.bucket


def our_threads() -> set[threading.Thread]:
    return {thread for thread in threading.enumerate() if thread.name.startswith("pyrate_limiter")}


async def wait_until_empty(bucket: AsyncInMemoryBucket, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await bucket.count() == 0:
            return True
        await asleep(0.01)
    return False


async def test_leak_runs_in_the_background_and_stops_on_close() -> None:
    earlier = our_threads()  # other tests' forgotten limiters may still be winding down
    clock = FakeClock()
    bucket = AsyncInMemoryBucket([Rate(5, Duration.SECOND)])
    factory = OneBucket(clock, bucket)
    async with AsyncLimiter(factory) as limiter:
        assert await limiter.try_acquire("k", weight=3)
        clock.advance(Duration.MINUTE)
        assert await wait_until_empty(bucket, seconds=10)
    assert our_threads() <= earlier


async def test_closing_a_limiter_leaves_no_thread_or_task_behind() -> None:
    earlier = our_threads()
    for _ in range(5):
        async with AsyncLimiter(Rate(1, 1000)) as limiter:
            assert await limiter.try_acquire("k")
    limiter = AsyncLimiter(Rate(1, 1000))
    await limiter.aclose()
    assert our_threads() <= earlier


async def test_create_accepts_a_clock_or_uses_the_factorys_own() -> None:
    clock = FakeClock()
    factory = OneBucket(clock, AsyncInMemoryBucket([Rate(1, 1000)]))
    with_clock = factory.create(clock, AsyncInMemoryBucket, [Rate(2, 1000)])
    without_clock = factory.create(AsyncInMemoryBucket, [Rate(3, 1000)])
    assert with_clock.rates == [Rate(2, 1000)]
    assert without_clock.rates == [Rate(3, 1000)]
    assert {id(b) for b in factory.get_buckets()} >= {id(with_clock), id(without_clock)}
    assert factory.dispose(with_clock)
    assert not factory.dispose(with_clock)
    assert factory.dispose(id(without_clock))  # v3 also took a bucket's id()
    assert not factory.dispose(id(without_clock))
    await factory.aclose()


async def test_put_trims_without_any_background_leak() -> None:
    clock = FakeClock()
    bucket = AsyncInMemoryBucket([Rate(2, 1000)])
    limiter = AsyncLimiter(bucket, clock=clock)
    for _ in range(50):
        assert await limiter.try_acquire("k", weight=2)
        clock.advance(1001)
    assert await bucket.count() == 2
    await limiter.aclose()
