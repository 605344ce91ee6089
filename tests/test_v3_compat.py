"""Code written against pyrate-limiter 3.9 runs unchanged: every name it exported, used as 3.x code
uses it, on both variants where the name has one; where 3.9 was wrong, we are right."""

from __future__ import annotations

import string
import threading
import time
from typing import TYPE_CHECKING, Any

import anyio
import pytest

import pyrate_limiter
from pyrate_limiter import (
    AbstractBucket,
    AsyncBucketFactory,
    AsyncInMemoryBucket,
    AsyncLimiter,
    AsyncSQLiteBucket,
    BucketAsyncWrapper,
    BucketFactory,
    BucketFullException,
    DecoratorWrapper,
    Duration,
    InMemoryBucket,
    ItemMapping,
    Limiter,
    LimiterDelayException,
    Rate,
    RateItem,
    SQLiteBucket,
    TimeAsyncClock,
    id_generator,
)

from .fake_clock import T0, FakeClock

if TYPE_CHECKING:
    from pathlib import Path

    from pyrate_limiter._rate import Verdict

# Every public name `from pyrate_limiter import *` gave in 3.9.0 (its own, not re-exported stdlib).
V3_NAMES = [
    "AbstractBucket", "AbstractClock", "BucketAsyncWrapper", "BucketFactory", "BucketFullException",
    "DecoratorWrapper", "Duration", "InMemoryBucket", "ItemMapping", "Leaker", "Limiter",
    "LimiterDelayException", "MonotonicClock", "MultiprocessBucket", "PgQueries", "PostgresBucket",
    "PostgresClock", "Rate", "RateItem", "RedisBucket", "SQLiteBucket", "SQLiteClock", "SQLiteQueries",
    "SingleBucketFactory", "TimeAsyncClock", "TimeClock", "binary_search", "combined_lock",
    "dedicated_sqlite_clock_connection", "id_generator", "limiter_factory", "validate_rate_list",
]  # fmt: skip


@pytest.fixture(params=["sync", "async"])
def variant(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def memory_limiter(variant: str, rates: list[Rate], **kwargs: Any) -> tuple[Any, Any, FakeClock]:
    """``Limiter(bucket, clock=...)`` over the variant's in-memory bucket, as 3.x code writes it."""
    clock = FakeClock()
    bucket = InMemoryBucket(rates) if variant == "sync" else AsyncInMemoryBucket(rates)
    return Limiter(bucket, clock=clock, **kwargs), bucket, clock


async def call(value: Any) -> Any:
    """The value, awaited if it is awaitable: one test body for both variants."""
    return await value if hasattr(value, "__await__") else value


def test_every_name_v3_9_exports_is_here() -> None:
    assert set(V3_NAMES) <= set(pyrate_limiter.__all__)
    assert all(getattr(pyrate_limiter, name, None) is not None for name in V3_NAMES)


def test_id_generator_makes_random_names_of_the_given_size() -> None:
    names = {id_generator() for _ in range(50)}
    assert len(names) > 45
    assert all(len(name) == 6 and name.isalnum() for name in names)
    assert set(id_generator(200, "ab")) <= {"a", "b"}
    assert len(id_generator(size=10, chars=string.digits)) == 10


async def test_time_async_clock_makes_the_limiter_async() -> None:
    assert abs(await TimeAsyncClock().now() - time.time() * 1000) < 5000
    for argument in (InMemoryBucket([Rate(2, Duration.MINUTE)]), [Rate(2, Duration.MINUTE)]):
        limiter = Limiter(argument, clock=TimeAsyncClock(), raise_when_fail=False)
        assert isinstance(limiter, AsyncLimiter)
        assert [await limiter.try_acquire("k") for _ in range(3)] == [True, True, False]


@pytest.mark.parametrize("kind", ["memory", "sqlite", "async"])
async def test_bucket_async_wrapper_uses_a_sync_bucket_through_the_async_api(kind: str, tmp_path: Path) -> None:
    rates = [Rate(2, 50)]
    inner: Any = AsyncInMemoryBucket(rates) if kind == "async" else InMemoryBucket(rates)
    if kind == "sqlite":
        inner = SQLiteBucket.init_from_file(rates, db_path=tmp_path / "b.sqlite")
    bucket = BucketAsyncWrapper(inner)
    assert bucket.rates == rates
    assert await bucket.put(RateItem("k", T0))
    assert await bucket.put(RateItem("k", T0, 1))
    assert not await bucket.put(RateItem("k", T0))
    assert bucket.failing_rate == rates[0]
    assert await bucket.count() == 2
    assert await bucket.peek(0) == RateItem("k", T0)
    assert await bucket.waiting(RateItem("k", T0 + 10)) == 41  # the items at T0 count through T0 + 50
    assert await bucket.leak(T0 + 50) == 0
    assert await bucket.leak(T0 + 51) == 2
    await bucket.flush()  # forgets the trim too: the limiter below starts again at T0
    assert bucket.failing_rate is None
    # Through the limiter, a wait is one exact reservation, not a sleep and a retry.
    limiter = Limiter(bucket, clock=FakeClock(), max_delay=100)
    assert isinstance(limiter, AsyncLimiter)
    assert await limiter.try_acquire("k")
    assert await limiter.try_acquire("k")
    assert await limiter.try_acquire_async("k")  # waited 51 ms: recorded where it fits
    assert await bucket.peek(0) == RateItem("k", T0 + 51)
    assert limiter.buckets() == [bucket]
    await bucket.aclose()


async def test_sync_limiter_try_acquire_async_never_blocks_the_loop_and_cancels_cleanly() -> None:
    bucket = InMemoryBucket([Rate(1, 5000)])
    limiter = Limiter(bucket, clock=FakeClock(), max_delay=10_000)
    assert await limiter.try_acquire_async("k")
    done: list[bool] = []

    async def waiter() -> None:
        done.append(await limiter.try_acquire_async("k"))

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(waiter)
        while bucket.count() < 2:  # noqa: ASYNC110 - the loop runs while the waiter's place is reserved
            await anyio.sleep(0.001)
        assert bucket.peek(0) == RateItem("k", T0 + 5001)
        assert not done
        tasks.cancel_scope.cancel()
    assert bucket.count() == 1  # the cancelled waiter gave its reservation back


async def test_try_acquire_async_refuses_as_try_acquire_does(variant: str) -> None:
    limiter, _, clock = memory_limiter(variant, [Rate(2, 1000)])
    assert await limiter.try_acquire_async("k", 2)
    with pytest.raises(BucketFullException):
        await limiter.try_acquire_async("k")
    limiter.max_delay = 200
    clock.advance(100)
    with pytest.raises(LimiterDelayException) as caught:
        await limiter.try_acquire_async("k")
    assert caught.value.meta_info["actual_delay"] == 901
    limiter.raise_when_fail = False
    assert await limiter.try_acquire_async("k") is False
    limiter.raise_when_fail = True
    with pytest.raises(BucketFullException):  # heavier than the limit: never fits
        await limiter.try_acquire_async("k", 3)


class PerName(BucketFactory):
    """A 3.x factory: one bucket per name."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.buckets: dict[str, AbstractBucket] = {}

    def wrap_item(self, name: str, weight: int = 1) -> RateItem:
        return RateItem(name, self.clock.now(), weight)

    def get(self, item: RateItem) -> AbstractBucket:
        if item.name not in self.buckets:
            self.buckets[item.name] = InMemoryBucket([Rate(1, 5000)])
        return self.buckets[item.name]


class AsyncPerName(AsyncBucketFactory):
    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.buckets: dict[str, AsyncInMemoryBucket] = {}

    async def wrap_item(self, name: str, weight: int = 1) -> RateItem:
        return RateItem(name, self.clock.now(), weight)

    async def get(self, item: RateItem) -> AsyncInMemoryBucket:
        return self.buckets.setdefault(item.name, AsyncInMemoryBucket([Rate(1, 5000)]))


async def test_a_wait_on_one_key_never_holds_up_another(variant: str) -> None:
    factory = PerName(FakeClock()) if variant == "sync" else AsyncPerName(FakeClock())
    limiter: Any = Limiter(factory, max_delay=10_000)
    assert await limiter.try_acquire_async("a")
    done: list[bool] = []

    async def waiter() -> None:
        done.append(await limiter.try_acquire_async("a"))

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(waiter)
        while await call(factory.buckets["a"].count()) < 2:  # noqa: ASYNC110 - a bucket has no event
            await anyio.sleep(0.001)
        assert await limiter.try_acquire_async("b")  # at once, while "a" waits 5 s
        assert not done
        tasks.cancel_scope.cancel()


async def test_buckets_and_dispose(variant: str) -> None:
    limiter, bucket, _ = memory_limiter(variant, [Rate(2, 1000)])
    assert limiter.buckets() == [bucket]
    assert limiter.dispose(bucket)
    assert limiter.buckets() == []
    assert not limiter.dispose(bucket)
    assert await call(limiter.try_acquire("k"))  # a disposed bucket still decides


async def test_retry_until_max_delay_and_buffer_ms_are_kept_and_change_no_decision(variant: str) -> None:
    limiter, bucket, _ = memory_limiter(variant, [Rate(1, 50)])
    assert (limiter.retry_until_max_delay, limiter.buffer_ms) == (False, 50)
    limiter, bucket, _ = memory_limiter(variant, [Rate(1, 50)], max_delay=60, retry_until_max_delay=True, buffer_ms=500)
    assert (limiter.retry_until_max_delay, limiter.buffer_ms) == (True, 500)
    assert await call(limiter.try_acquire("k"))
    assert await call(limiter.try_acquire("k"))  # a 51 ms wait: within max_delay despite the buffer
    assert await call(bucket.peek(0)) == RateItem("k", T0 + 51)  # recorded exactly where it fits
    with pytest.raises(LimiterDelayException):  # 100 ms away: no retrying past max_delay
        await call(limiter.try_acquire("k"))


async def test_a_decorated_function_never_runs_after_a_denied_acquire(variant: str) -> None:
    limiter, _, _ = memory_limiter(variant, [Rate(1, 1000)], raise_when_fail=False)
    calls: list[int] = []
    mapping: ItemMapping = lambda value: ("k", 1)  # noqa: E731 - the 3.x shape of a mapping
    decorate: DecoratorWrapper = limiter.as_decorator()(mapping)

    if variant == "sync":

        @decorate
        def work(value: int) -> int:
            calls.append(value)
            return value

    else:

        @decorate
        async def work(value: int) -> int:
            calls.append(value)
            return value

    assert await call(work(1)) == 1
    assert await call(work(2)) is None
    assert calls == [1]


async def test_sqlite_init_from_file_accepts_use_file_lock(variant: str, tmp_path: Path) -> None:
    kind: Any = SQLiteBucket if variant == "sync" else AsyncSQLiteBucket
    bucket = await call(kind.init_from_file([Rate(1, 1000)], db_path=str(tmp_path / "l.sqlite"), use_file_lock=True))
    assert await call(bucket.put(RateItem("k", T0)))
    assert not await call(bucket.put(RateItem("k", T0)))
    await call(bucket.aclose() if variant == "async" else bucket.close())


@pytest.mark.parametrize("spelling", ["Limiter.try_acquire_async", "BucketAsyncWrapper"])
async def test_an_acquire_cancelled_while_its_thread_decides_counts_once(tmp_path: Path, spelling: str) -> None:
    # A worker thread cannot be stopped: its decision stands, recorded once, and the limit holds.
    entered, go = threading.Event(), threading.Event()

    class SlowBucket(SQLiteBucket):
        def reserve(self, item: RateItem, max_delay: int | None) -> Verdict:
            entered.set()
            go.wait(10)
            return super().reserve(item, max_delay)

    bucket = SlowBucket.init_from_file([Rate(2, Duration.MINUTE)], db_path=tmp_path / "slow.sqlite")
    if spelling == "BucketAsyncWrapper":
        acquire = Limiter(BucketAsyncWrapper(bucket), raise_when_fail=False).try_acquire
    else:
        acquire = Limiter(bucket, raise_when_fail=False).try_acquire_async
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(acquire, "k")
        await anyio.to_thread.run_sync(entered.wait)
        tasks.cancel_scope.cancel()
        go.set()
    assert bucket.count() == 1
    assert [await acquire("k"), await acquire("k")] == [True, False]
    assert bucket.count() == 2
    bucket.close()


async def test_try_acquire_async_takes_a_per_call_max_delay() -> None:
    limiter = Limiter(InMemoryBucket([Rate(1, Duration.MINUTE)]), max_delay=2 * Duration.MINUTE)
    assert await limiter.try_acquire_async("k")
    with pytest.raises(LimiterDelayException) as caught:
        await limiter.try_acquire_async("k", max_delay=10)
    assert caught.value.meta_info["max_delay"] == 10
    with pytest.raises(BucketFullException):
        await limiter.try_acquire_async("k", 1, None)
    assert limiter.buckets()[0].count() == 1
