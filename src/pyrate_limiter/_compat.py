"""v3 spellings that pick a variant at run time, kept in this one place.

v3 had one ``Limiter`` for both worlds: ``Limiter(async_bucket)`` followed by
``await limiter.try_acquire(...)``. Here the public ``Limiter`` is the sync twin unless what
it is given is async, in which case construction returns an ``AsyncLimiter``.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, overload

from ._async import AsyncAbstractBucket, AsyncBucketFactory, AsyncLimiter
from ._async.buckets.redis import AsyncRedisBucket, is_async_client
from ._sync import AbstractBucket, BucketFactory
from ._sync import Limiter as _SyncLimiter
from ._sync.buckets.redis import RedisBucket as _SyncRedisBucket

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from typing_extensions import Self

    from ._rate import Rate
    from ._typing import AsyncRedisClient, RedisClient


class Limiter(_SyncLimiter):
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
        return super().__new__(cls)


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
