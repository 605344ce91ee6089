"""v3 spellings that pick a variant at run time, kept in this one place.

v3 had one ``Limiter`` for both worlds: ``Limiter(async_bucket)`` followed by
``await limiter.try_acquire(...)``. Here the public ``Limiter`` is the sync twin unless what
it is given is async, in which case construction returns an ``AsyncLimiter``.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, overload

import anyio
import anyio.to_thread

from ._async import AsyncAbstractBucket, AsyncAbstractClock, AsyncBucketFactory, AsyncLimiter
from ._async.buckets.redis import AsyncRedisBucket, is_async_client
from ._errors import BucketFullException, LimiterDelayException
from ._rate import Rate, RateItem
from ._sync import AbstractBucket, AbstractClock, BucketFactory
from ._sync import Limiter as _SyncLimiter
from ._sync.buckets.redis import RedisBucket as _SyncRedisBucket
from ._v3 import BucketAsyncWrapper
from ._window import NEVER

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from typing_extensions import Self

    from ._typing import AsyncRedisClient, RedisClient


class _EitherLimiter(type):
    """``isinstance(x, Limiter)`` holds for the ``AsyncLimiter`` that ``Limiter(...)`` may return."""

    def __instancecheck__(cls, instance: object) -> bool:
        return super().__instancecheck__(instance) or (cls is Limiter and isinstance(instance, AsyncLimiter))

    def __subclasscheck__(cls, subclass: type) -> bool:
        return super().__subclasscheck__(subclass) or (cls is Limiter and issubclass(subclass, AsyncLimiter))


class Limiter(_SyncLimiter, metaclass=_EitherLimiter):
    """The sync limiter; given an async bucket or factory, an ``AsyncLimiter`` instead."""

    # Construction may yield the async twin, as v3's single Limiter did.
    @overload
    def __new__(  # type: ignore[misc]
        cls, argument: AsyncAbstractBucket | AsyncBucketFactory, *args: Any, **kwargs: Any
    ) -> AsyncLimiter: ...
    @overload
    def __new__(
        cls, argument: Rate | list[Rate] | AbstractBucket | BucketFactory, *args: Any, **kwargs: Any
    ) -> Self: ...
    def __new__(cls, argument: Any = None, *args: Any, **kwargs: Any) -> Any:
        if is_async(argument):
            return AsyncLimiter(argument, *args, **kwargs)
        clock = args[0] if args else kwargs.get("clock")
        if isinstance(argument, Rate | list | AbstractBucket) and is_async_clock(clock):
            # v3: an async clock (TimeAsyncClock) made acquires awaitable over any bucket.
            if isinstance(argument, AbstractBucket):
                argument = BucketAsyncWrapper(argument)
            return AsyncLimiter(argument, *args, **kwargs)
        return super().__new__(cls)

    async def try_acquire_async(self, name: str, weight: int = 1) -> bool:  # type: ignore[override]
        """``try_acquire`` for code on an event loop (asyncio or trio), which it never blocks.

        The decision runs in a worker thread (a sync bucket may do I/O); a wait is slept on the
        loop, and a waiter cancelled before its time gives its reservation back. The generated
        base class has a sync method of this name; v3 code awaits this one.
        """
        decided: list[Any] = []
        try:
            await anyio.to_thread.run_sync(self._decide, name, weight, decided)
        except BaseException:
            # Cancelled while the thread decided: the thread still finished; give back its record.
            if len(decided) == 4 and decided[3] is None:
                await _release(decided[1], decided[0], decided[2])
            raise
        item, bucket, delay, rate = decided
        if rate is None:
            if delay:
                try:
                    await anyio.sleep(delay / 1000)
                except BaseException:
                    await _release(bucket, item, delay)
                    raise
            return True
        if not self.raise_when_fail:
            return False
        if self.max_delay is None or delay == NEVER:
            raise BucketFullException(item, rate)
        raise LimiterDelayException(item, rate, delay, self.max_delay)

    def _decide(self, name: str, weight: int, decided: list[Any]) -> None:
        if type(weight) is not int:
            raise TypeError(f"weight must be an int, got {weight!r}")
        if weight < 0:
            raise ValueError(f"weight must be >= 0, got {weight}")
        item, bucket = self._route(name, weight)
        decided += [item, bucket, *bucket.reserve(item, self.max_delay)]


async def _release(bucket: AbstractBucket, item: RateItem, delay: int) -> None:
    with anyio.CancelScope(shield=True):
        await anyio.to_thread.run_sync(bucket.release, RateItem(item.name, item.timestamp + delay, item.weight))


def is_async_clock(clock: Any) -> bool:
    """Whether ``clock.now`` is a coroutine function (a factory's own clock is not asked)."""
    return clock is not None and inspect.iscoroutinefunction(getattr(type(clock), "now", None))


def is_async(argument: Any) -> bool:
    """Whether a limiter over ``argument`` must be the async one."""
    if isinstance(argument, AsyncAbstractBucket | AsyncBucketFactory):
        return True
    if isinstance(argument, BucketFactory):
        kind = type(argument)
        return (
            inspect.iscoroutinefunction(kind.get)
            or inspect.iscoroutinefunction(kind.wrap_item)
            or any(isinstance(bucket, AsyncAbstractBucket) for bucket in argument.get_buckets())
        )
    if isinstance(argument, AbstractBucket) and inspect.iscoroutinefunction(type(argument).put):
        raise TypeError(f"{type(argument).__name__} has async methods: subclass AsyncAbstractBucket instead")
    return False


class RedisBucket(_SyncRedisBucket):
    """The sync Redis bucket; ``await RedisBucket.init(...)`` with an async client makes the async twin.

    As in v3, where one ``RedisBucket.init`` served ``redis.Redis`` and ``redis.asyncio.Redis``.
    """

    def __init__(self, rates: list[Rate], redis: RedisClient, bucket_key: str, *, server_time: bool = False) -> None:
        if is_async_client(redis):
            raise TypeError(f"{redis!r} is an async client: use `await RedisBucket.init(...)` or AsyncRedisBucket")
        super().__init__(rates, redis, bucket_key, server_time=server_time)

    # May return the async twin's awaitable, as v3 did.
    @overload
    @classmethod
    def init(
        cls, rates: list[Rate], redis: AsyncRedisClient, bucket_key: str, *, server_time: bool = False
    ) -> Awaitable[AsyncRedisBucket]: ...
    @overload
    @classmethod
    def init(cls, rates: list[Rate], redis: RedisClient, bucket_key: str, *, server_time: bool = False) -> Self: ...
    @classmethod
    def init(cls, rates: list[Rate], redis: Any, bucket_key: str, *, server_time: bool = False) -> Any:
        if is_async_client(redis):
            return AsyncRedisBucket.init(rates, redis, bucket_key, server_time=server_time)
        return super().init(rates, redis, bucket_key, server_time=server_time)


# v3 had one class per concept for both worlds, and its users check for it: every bucket is an
# AbstractBucket, every factory a BucketFactory, every clock an AbstractClock, and what
# ``await RedisBucket.init(...)`` returns a RedisBucket, whichever variant they are.
AbstractBucket.register(AsyncAbstractBucket)  # type: ignore[type-abstract]  # ABCs register ABCs
BucketFactory.register(AsyncBucketFactory)  # type: ignore[type-abstract]
AbstractClock.register(AsyncAbstractClock)  # type: ignore[type-abstract]
RedisBucket.register(AsyncRedisBucket)
