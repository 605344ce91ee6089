"""v3's buckets and factories seen through the async interface, and the tests that tell them apart.

v3 let one class serve both worlds: an ``AbstractBucket`` written with ``async def`` methods, a
``BucketFactory`` whose ``get`` is async or hands out async buckets. The async core takes only
its own interfaces; these adapters present v3's objects as them, for ``_compat``.
"""

from __future__ import annotations

import inspect
import weakref
from typing import TYPE_CHECKING, Any

from ._async import AsyncAbstractBucket, AsyncBucketFactory
from ._sync import AbstractBucket, BucketFactory
from ._v3 import BucketAsyncWrapper

if TYPE_CHECKING:
    from ._rate import Rate, RateItem, Verdict


class AsyncFactory(AsyncBucketFactory):
    """A v3 ``BucketFactory`` whose ``wrap_item``, ``get`` or buckets are async, seen through the
    async interface; every other attribute is the factory's own."""

    def __init__(self, factory: BucketFactory) -> None:
        self.factory = factory

    async def wrap_item(self, name: str, weight: int = 1) -> RateItem:
        item: RateItem = await awaited(self.factory.wrap_item(name, weight))
        return item

    async def get(self, item: RateItem) -> AsyncAbstractBucket:
        return as_async_bucket(await awaited(self.factory.get(item)))

    def get_buckets(self) -> list[AsyncAbstractBucket]:
        return self.factory.get_buckets()  # type: ignore[return-value]  # v3: of either variant

    def dispose(self, bucket: AsyncAbstractBucket | int) -> bool:
        return self.factory.dispose(bucket)  # type: ignore[arg-type]

    async def aclose(self) -> None:
        await super().aclose()
        self.factory.close()  # its leak thread

    def __getattr__(self, name: str) -> Any:
        return getattr(self.factory, name)


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
    return False


def has_async_methods(bucket: Any) -> bool:
    """Whether ``bucket`` is a v3-style ``AbstractBucket`` written with ``async def`` methods."""
    return (
        isinstance(bucket, AbstractBucket)
        and AsyncAbstractBucket not in type(bucket).__mro__
        and inspect.iscoroutinefunction(type(bucket).put)
    )


def as_async_bucket(bucket: Any) -> AsyncAbstractBucket:
    """``bucket`` as the async API takes it: itself, or one adapter per sync bucket (kept, so a
    reservation made through it is given back through it)."""
    if AsyncAbstractBucket in type(bucket).__mro__:
        return bucket  # type: ignore[no-any-return]
    adapter = _ADAPTERS.get(bucket)
    if adapter is None:
        adapter = _ADAPTERS[bucket] = _AsyncMethods(bucket) if has_async_methods(bucket) else BucketAsyncWrapper(bucket)
    return adapter


class _AsyncMethods(AsyncAbstractBucket):
    """A v3-style bucket with ``async def`` methods, seen through the async interface.

    Its own methods are awaited; ``waiting``, ``reserve`` and ``release`` fall back to the async
    base's, built on ``put`` and ``peek``, unless the bucket defines them itself.
    """

    def __init__(self, bucket: AbstractBucket) -> None:
        self.bucket = bucket

    @property
    def rates(self) -> list[Rate]:  # type: ignore[override]
        return self.bucket.rates

    @property
    def failing_rate(self) -> Rate | None:  # type: ignore[override]
        return self.bucket.failing_rate

    async def put(self, item: RateItem) -> bool:
        return bool(await awaited(self.bucket.put(item)))

    async def leak(self, current_timestamp: int) -> int:
        return int(await awaited(self.bucket.leak(current_timestamp)))

    async def flush(self) -> None:
        await awaited(self.bucket.flush())

    async def count(self) -> int:
        return int(await awaited(self.bucket.count()))

    async def peek(self, index: int) -> RateItem | None:
        found: RateItem | None = await awaited(self.bucket.peek(index))
        return found

    async def waiting(self, item: RateItem) -> int:
        if _own(self.bucket, "waiting"):
            return int(await awaited(self.bucket.waiting(item)))
        return await super().waiting(item)

    async def reserve(self, item: RateItem, max_delay: int | None) -> Verdict:
        if _own(self.bucket, "reserve"):
            result: Verdict = await awaited(self.bucket.reserve(item, max_delay))
            return result
        return await super().reserve(item, max_delay)

    async def release(self, item: RateItem) -> None:
        if _own(self.bucket, "release"):
            await awaited(self.bucket.release(item))  # type: ignore[func-returns-value]  # async in fact


_ADAPTERS: weakref.WeakKeyDictionary[Any, AsyncAbstractBucket] = weakref.WeakKeyDictionary()


async def awaited(value: Any) -> Any:
    """``value``, awaited for as long as it is awaitable (v3 code may nest them)."""
    while inspect.isawaitable(value):
        value = await value
    return value


def _own(bucket: Any, method: str) -> bool:
    """Whether ``bucket``'s class defines ``method`` itself rather than inheriting the sync base's."""
    return getattr(type(bucket), method) is not getattr(AbstractBucket, method)
