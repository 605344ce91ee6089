"""What only the async variant has: cancellation, v3's async routing, a loop shared by keys."""

from __future__ import annotations

import subprocess
import sys
import time

import anyio
import pytest

from pyrate_limiter import (
    AsyncBucketFactory,
    AsyncInMemoryBucket,
    AsyncLimiter,
    BucketFactory,
    InMemoryBucket,
    Limiter,
    Rate,
    RateItem,
)

from .fake_clock import T0, FakeClock

pytestmark = pytest.mark.anyio


async def test_cancelled_waiter_gives_its_reservation_back() -> None:
    bucket = AsyncInMemoryBucket([Rate(1, 400)])
    limiter = AsyncLimiter(bucket, max_delay=5000)
    assert await limiter.try_acquire("k")
    with anyio.move_on_after(0.05):
        await limiter.try_acquire("k")  # reserved ~400 ms ahead, then cancelled
    assert await bucket.count() == 1
    # The next waiter takes the freed place instead of queueing behind the ghost.
    started = time.monotonic()
    assert await limiter.try_acquire("k")
    assert time.monotonic() - started < 0.39 + 0.3


async def test_a_waiter_on_one_key_never_delays_another_key() -> None:
    class PerKey(AsyncBucketFactory):
        def __init__(self) -> None:
            self.buckets = {"a": AsyncInMemoryBucket([Rate(1, 2000)]), "b": AsyncInMemoryBucket([Rate(100, 2000)])}

        async def wrap_item(self, name: str, weight: int = 1) -> RateItem:
            return RateItem(name, int(time.time() * 1000), weight)

        async def get(self, item: RateItem) -> AsyncInMemoryBucket:
            return self.buckets[item.name]

    limiter = AsyncLimiter(PerKey(), max_delay=5000)
    assert await limiter.try_acquire("a")
    b_took: list[float] = []

    async def key_b() -> None:
        await anyio.sleep(0.05)  # let key a's waiter start sleeping
        started = time.monotonic()
        for _ in range(50):
            assert await limiter.try_acquire("b")
        b_took.append(time.monotonic() - started)

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(limiter.try_acquire, "a")  # waits ~2 s
        tasks.start_soon(key_b)
        with anyio.fail_after(1.5):
            while not b_took:  # noqa: ASYNC110 - polls a result list, bounded by fail_after
                await anyio.sleep(0.01)
        tasks.cancel_scope.cancel()
    assert b_took[0] < 1.0


async def test_v3_limiter_over_an_async_bucket_is_awaited() -> None:
    limiter = Limiter(AsyncInMemoryBucket([Rate(1, 1000)]), raise_when_fail=False)
    assert isinstance(limiter, AsyncLimiter)
    assert await limiter.try_acquire("k")
    assert not await limiter.try_acquire("k")


async def test_v3_limiter_over_a_sync_factory_of_async_buckets_is_awaited() -> None:
    bucket = AsyncInMemoryBucket([Rate(1, 1000)])

    class Factory(BucketFactory):
        def __init__(self) -> None:
            self.schedule_leak(bucket, FakeClock())  # type: ignore[arg-type]

        def wrap_item(self, name: str, weight: int = 1) -> RateItem:
            return RateItem(name, T0, weight)

        def get(self, item: RateItem) -> AsyncInMemoryBucket:  # type: ignore[override]
            return bucket

    limiter = Limiter(Factory(), raise_when_fail=False)
    assert isinstance(limiter, AsyncLimiter)
    assert await limiter.try_acquire("k")
    await limiter.aclose()


async def test_sync_limiter_decorates_coroutines_without_blocking_the_loop() -> None:
    limiter = Limiter(Rate(1, 300), max_delay=1000)
    calls: list[int] = []

    @limiter.as_decorator()(lambda n: "k")
    async def work(n: int) -> int:
        calls.append(n)
        return n

    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await anyio.sleep(0.01)

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(ticker)
        assert await work(1) == 1
        assert await work(2) == 2  # waits ~300 ms in a worker thread
        tasks.cancel_scope.cancel()
    assert calls == [1, 2]
    assert ticks >= 10  # the loop kept running while the second call waited
    limiter.close()


def test_async_limiter_made_before_any_loop_runs_on_both_backends() -> None:
    limiter = AsyncLimiter(Rate(2, 1000), raise_when_fail=False)

    async def use() -> list[bool]:
        async with limiter:
            return [await limiter.try_acquire(name) for name in ("x", "x", "x")]

    assert anyio.run(use) == [True, True, False]
    assert anyio.run(use, backend="trio") == [False, False, False]


def test_sync_limiter_over_a_factory_handing_out_an_async_bucket_gives_an_awaitable() -> None:
    bucket = AsyncInMemoryBucket([Rate(1, 1000)])

    class Factory(BucketFactory):
        def wrap_item(self, name: str, weight: int = 1) -> RateItem:
            return RateItem(name, T0, weight)

        def get(self, item: RateItem) -> InMemoryBucket:
            return bucket  # type: ignore[return-value]

    limiter = Limiter(Factory(), raise_when_fail=False)

    async def use() -> list[bool]:
        return [await limiter.try_acquire("k"), await limiter.try_acquire("k")]  # type: ignore[misc]

    assert anyio.run(use) == [True, False]  # as in 3.x: the awaitable decides, in the async bucket


def test_a_forgotten_limiter_never_keeps_the_process_alive() -> None:
    code = (
        "from pyrate_limiter import Limiter, Rate, Duration\n"
        "limiter = Limiter(Rate(5, Duration.HOUR))\n"
        "limiter.try_acquire('k')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=10)
