"""v3 spellings that pick a variant at run time, kept in this one place.

v3 had one ``Limiter`` for both worlds: ``Limiter(async_bucket)`` followed by
``await limiter.try_acquire(...)``. Here the public ``Limiter`` is the sync twin unless what
it is given is async, in which case construction returns an ``AsyncLimiter``.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, overload

from ._async import AsyncAbstractBucket, AsyncBucketFactory, AsyncLimiter
from ._sync import AbstractBucket, BucketFactory
from ._sync import Limiter as _SyncLimiter

if TYPE_CHECKING:
    from typing_extensions import Self

    from ._rate import Rate


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
