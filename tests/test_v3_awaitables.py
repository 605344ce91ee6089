"""3.x code that mixes sync and async the way 3.x allowed: awaitables found at the call, not before.

In 3.x one ``Limiter`` served both worlds: when a factory's plain ``def wrap_item`` or ``get``, a
clock, or a bucket written with ``async def`` handed back an awaitable, ``try_acquire`` (and the
decorator) returned one too. Each test writes such code as the 3.x docs do and runs it unchanged.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

import pytest

from pyrate_limiter import (
    AbstractBucket,
    AsyncInMemoryBucket,
    BucketFactory,
    BucketFullException,
    Duration,
    InMemoryBucket,
    Limiter,
    LimiterDelayException,
    Rate,
    RateItem,
    TimeAsyncClock,
    TimeClock,
)

from ._async.bucket_kinds import AsyncListBucket
from .fake_clock import T0, FakeClock

if TYPE_CHECKING:
    from collections.abc import Callable


class ClockFollowingFactory(BucketFactory):
    """The 3.x docs' factory: ``wrap_item`` is a plain ``def`` that is async only if its clock is."""

    def __init__(self, clock: Any, rates: list[Rate]) -> None:
        self.clock = clock
        self.bucket = InMemoryBucket(rates)

    def wrap_item(self, name: str, weight: int = 1) -> Any:
        now = self.clock.now()

        async def wrap_async() -> RateItem:
            return RateItem(name, await now, weight=weight)

        return wrap_async() if inspect.isawaitable(now) else RateItem(name, now, weight=weight)

    def get(self, item: RateItem) -> InMemoryBucket:
        return self.bucket


class ListBucket(AbstractBucket):
    """A user's bucket written as the docs say: ``AbstractBucket`` with ``async def`` methods.

    Its storage is the suite's v3-style list bucket; only the base class and the ``async def``
    spelling are what this module tests.
    """

    def __init__(self, rates: list[Rate]) -> None:
        self.rates = rates
        self._list = AsyncListBucket(rates)

    async def put(self, item: RateItem) -> bool:  # type: ignore[override]
        fits = await self._list.put(item)
        self.failing_rate = self._list.failing_rate
        return fits

    async def leak(self, current_timestamp: int | None = None) -> int:  # type: ignore[override]
        return await self._list.leak(current_timestamp)

    async def flush(self) -> None:  # type: ignore[override]
        await self._list.flush()

    async def count(self) -> int:  # type: ignore[override]
        return await self._list.count()

    async def peek(self, index: int) -> RateItem | None:  # type: ignore[override]
        return await self._list.peek(index)


class RoutingFactory(BucketFactory):
    """A factory handing out whatever bucket it was given, from a plain ``def get``."""

    def __init__(self, clock: Any, bucket: Any) -> None:
        self.clock, self.bucket = clock, bucket

    def wrap_item(self, name: str, weight: int = 1) -> RateItem:
        return RateItem(name, self.clock.now(), weight=weight)

    def get(self, item: RateItem) -> Any:
        return self.bucket


async def test_a_factory_with_async_def_routing_makes_the_limiter_async() -> None:
    # The 3.x docs' MultiBucketFactory written for an async backend: BucketFactory, async def.
    clock = FakeClock()

    class AsyncRouting(BucketFactory):
        def __init__(self) -> None:
            self.made: dict[str, Any] = {}

        async def wrap_item(self, name: str, weight: int = 1) -> RateItem:  # type: ignore[override]
            return RateItem(name, clock.now(), weight=weight)

        async def get(self, item: RateItem) -> Any:  # type: ignore[override]
            if item.name not in self.made:
                self.made[item.name] = self.create(clock, AsyncInMemoryBucket, [Rate(1, 1000)])
            return self.made[item.name]

    factory = AsyncRouting()
    limiter: Any = Limiter(factory, raise_when_fail=False, max_delay=None, buffer_ms=10)
    assert limiter.buffer_ms == 10
    assert limiter.bucket_factory.made is factory.made  # the user's factory shows through
    assert [await limiter.try_acquire(name) for name in ("a", "a", "b")] == [True, False, True]
    assert [await limiter.try_acquire_async(name) for name in ("a", "b")] == [False, False]
    assert sorted(limiter.buckets(), key=id) == sorted(factory.made.values(), key=id)
    clock.advance(1001)
    assert await limiter.try_acquire("a") is True
    await limiter.aclose()


def test_a_factory_over_a_sync_clock_keeps_try_acquire_plainly_sync() -> None:
    limiter: Any = Limiter(ClockFollowingFactory(TimeClock(), [Rate(2, Duration.MINUTE)]), raise_when_fail=False)
    assert [limiter.try_acquire("k") for _ in range(3)] == [True, True, False]


async def test_a_factory_over_an_async_clock_makes_that_try_acquire_awaitable() -> None:
    limiter: Any = Limiter(ClockFollowingFactory(TimeAsyncClock(), [Rate(2, Duration.MINUTE)]))
    acquired = limiter.try_acquire("k")
    assert inspect.isawaitable(acquired)
    assert await acquired is True
    assert await limiter.try_acquire("k") is True
    with pytest.raises(BucketFullException):
        await limiter.try_acquire("k")


async def test_a_plain_get_returning_a_coroutine_makes_the_bucket_on_demand() -> None:
    clock = FakeClock()

    class LazyFactory(BucketFactory):
        def __init__(self) -> None:
            self.made: dict[str, AsyncInMemoryBucket] = {}

        def wrap_item(self, name: str, weight: int = 1) -> RateItem:
            return RateItem(name, clock.now(), weight=weight)

        def get(self, item: RateItem) -> Any:
            async def make() -> AsyncInMemoryBucket:
                return self.made.setdefault(item.name, AsyncInMemoryBucket([Rate(1, 1000)]))

            return make()

    factory = LazyFactory()
    limiter: Any = Limiter(factory, raise_when_fail=False)
    assert [await limiter.try_acquire(name) for name in ("a", "a", "b")] == [True, False, True]
    assert sorted(factory.made) == ["a", "b"]
    clock.advance(1001)
    assert await limiter.try_acquire("a") is True


async def test_a_plain_clock_returning_an_awaitable_over_a_sync_bucket() -> None:
    class AwaitableClock:
        def now(self) -> Any:
            async def read() -> int:
                return T0

            return read()

    bucket = InMemoryBucket([Rate(1, 1000)])
    limiter: Any = Limiter(bucket, clock=AwaitableClock(), raise_when_fail=False)
    assert await limiter.try_acquire("k") is True
    assert await limiter.try_acquire("k") is False
    assert bucket.peek(0) == RateItem("k", T0)


async def test_an_abstract_bucket_with_async_methods_works_through_the_limiter() -> None:
    bucket = ListBucket([Rate(2, 1000)])
    limiter: Any = Limiter(bucket, clock=FakeClock(), max_delay=2000)
    assert await limiter.try_acquire("k")
    assert await limiter.try_acquire("k")
    # No room until T0 + 1001: the wait is computed from the bucket's own peek, then put there.
    assert await limiter.try_acquire("k")
    assert await bucket.count() == 3
    newest = await bucket.peek(0)
    assert newest is not None
    assert newest.timestamp == T0 + 1001
    with pytest.raises(LimiterDelayException):
        await limiter.try_acquire("k", max_delay=100)


async def test_an_abstract_bucket_with_async_methods_works_through_a_factory_and_decorators() -> None:
    bucket = ListBucket([Rate(2, 1000)])
    limiter: Any = Limiter(RoutingFactory(FakeClock(), bucket), raise_when_fail=False)
    assert await limiter.try_acquire("k") is True
    decorate: Callable[[Any], Callable[[Callable[..., Any]], Callable[..., Any]]] = limiter.as_decorator()
    calls: list[str] = []

    @decorate(lambda *_: "k")
    async def fetch() -> str:
        calls.append("async")
        return "done"

    @decorate(lambda *_: "k")
    def compute() -> str:
        calls.append("sync")
        return "done"

    assert await fetch() == "done"
    assert await compute() is None  # refused: the function never ran
    assert await fetch() is None
    assert calls == ["async"]
    assert await bucket.count() == 2


def test_decorators_over_sync_buckets_stay_sync_with_a_users_factory() -> None:
    limiter: Any = Limiter(RoutingFactory(FakeClock(), InMemoryBucket([Rate(1, 1000)])), raise_when_fail=False)

    decorate: Callable[[Any], Callable[[Callable[..., Any]], Callable[..., Any]]] = limiter.as_decorator()

    @decorate(lambda *_: "k")
    def compute() -> str:
        return "done"

    assert compute() == "done"
    assert compute() is None


# The factory's own clock coroutine, made inside wrap_item's, is never awaited: that warning is its.
@pytest.mark.filterwarnings("ignore::RuntimeWarning", "ignore::pytest.PytestUnraisableExceptionWarning")
def test_new_calls_over_a_factory_that_turns_async_say_to_use_the_async_limiter() -> None:
    limiter: Any = Limiter(ClockFollowingFactory(TimeAsyncClock(), [Rate(2, Duration.MINUTE)]))
    calls = [limiter.state, limiter.reserve, limiter.paused_until, lambda k: limiter.pause(k, 10)]
    for call in [*calls, lambda k: limiter.pause_until(k, 10**13)]:
        with pytest.raises(TypeError, match="use AsyncLimiter"):
            call("k")
    with pytest.raises(TypeError, match="use AsyncLimiter"), limiter.acquire("k"):
        pass
