"""Ready-made limiters for common cases, as v3.9's ``pyrate_limiter.limiter_factory`` offered them.

``init_global_limiter`` is meant as a ``ProcessPoolExecutor`` initializer: each worker process
then finds its limiter in ``limiter_factory.LIMITER``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Literal, overload

from ._compat import Limiter, _V3AsyncLimiter
from ._rate import Duration, Rate
from ._sync.buckets.in_memory import InMemoryBucket
from ._sync.buckets.sqlite import SQLiteBucket
from ._v3 import BucketAsyncWrapper

if TYPE_CHECKING:
    import os

    from ._async.buckets.base import AsyncAbstractBucket
    from ._async.limiter import AsyncLimiter
    from ._sync.buckets.base import AbstractBucket

logger = logging.getLogger(__name__)

LIMITER: Limiter | AsyncLimiter | None = None
"""The limiter ``init_global_limiter`` made in this process."""


def create_sqlite_bucket(
    rates: list[Rate],
    db_path: str | os.PathLike[str] | None,
    table_name: str = "pyrate_limiter",
    use_file_lock: bool = False,
) -> SQLiteBucket:
    """An SQLite bucket in the file ``db_path`` (``None``: the default file, see ``default_db_path``).

    :param use_file_lock: accepted and ignored: every decision is one SQLite transaction, which
        the processes sharing the file already take turns on.
    """
    return SQLiteBucket.init_from_file(
        rates, table=table_name, db_path=db_path, create_new_table=True, use_file_lock=use_file_lock
    )


@overload
def create_sqlite_limiter(
    rate_per_duration: int = ...,
    duration: int | Duration = ...,
    db_path: str | os.PathLike[str] | None = ...,
    table_name: str = ...,
    max_delay: int | Duration = ...,
    buffer_ms: int = ...,
    use_file_lock: bool = ...,
    async_wrapper: Literal[False] = ...,
) -> Limiter: ...
@overload
def create_sqlite_limiter(
    rate_per_duration: int = ...,
    duration: int | Duration = ...,
    db_path: str | os.PathLike[str] | None = ...,
    table_name: str = ...,
    max_delay: int | Duration = ...,
    buffer_ms: int = ...,
    use_file_lock: bool = ...,
    *,
    async_wrapper: Literal[True],
) -> _V3AsyncLimiter: ...
def create_sqlite_limiter(
    rate_per_duration: int = 3,
    duration: int | Duration = Duration.SECOND,
    db_path: str | os.PathLike[str] | None = None,
    table_name: str = "rate_bucket",
    max_delay: int | Duration = Duration.DAY,
    buffer_ms: int = 50,
    use_file_lock: bool = False,
    async_wrapper: bool = False,
) -> Limiter | AsyncLimiter:
    """A limiter of ``rate_per_duration`` per ``duration`` over an SQLite file, waiting up to ``max_delay``.

    It returns ``False`` instead of raising. ``async_wrapper=True`` gives the async limiter, over
    the same bucket wrapped in ``BucketAsyncWrapper``.
    """
    bucket = create_sqlite_bucket([Rate(rate_per_duration, duration)], db_path, table_name, use_file_lock)
    return _limiter(bucket, max_delay, buffer_ms, async_wrapper)


@overload
def create_inmemory_limiter(
    rate_per_duration: int = ...,
    duration: int | Duration = ...,
    max_delay: int | Duration = ...,
    buffer_ms: int = ...,
    async_wrapper: Literal[False] = ...,
) -> Limiter: ...
@overload
def create_inmemory_limiter(
    rate_per_duration: int = ...,
    duration: int | Duration = ...,
    max_delay: int | Duration = ...,
    buffer_ms: int = ...,
    *,
    async_wrapper: Literal[True],
) -> _V3AsyncLimiter: ...
def create_inmemory_limiter(
    rate_per_duration: int = 3,
    duration: int | Duration = Duration.SECOND,
    max_delay: int | Duration = Duration.DAY,
    buffer_ms: int = 50,
    async_wrapper: bool = False,
) -> Limiter | AsyncLimiter:
    """A limiter of ``rate_per_duration`` per ``duration`` in this process, waiting up to ``max_delay``.

    It returns ``False`` instead of raising; ``async_wrapper=True`` gives the async limiter.
    """
    return _limiter(InMemoryBucket([Rate(rate_per_duration, duration)]), max_delay, buffer_ms, async_wrapper)


def init_global_limiter(
    bucket: AbstractBucket | AsyncAbstractBucket,
    max_delay: int | Duration | None = Duration.HOUR,
    raise_when_fail: bool = False,
    retry_until_max_delay: bool = True,
    buffer_ms: int = 50,
) -> None:
    """Make this process's ``LIMITER`` over ``bucket``: a ``ProcessPoolExecutor`` initializer.

    ``ProcessPoolExecutor(initializer=init_global_limiter, initargs=(MultiprocessBucket.init(rates),))``
    gives every worker a limiter over one shared bucket.
    """
    global LIMITER
    LIMITER = Limiter(
        bucket,
        raise_when_fail=raise_when_fail,
        max_delay=max_delay,
        retry_until_max_delay=retry_until_max_delay,
        buffer_ms=buffer_ms,
    )


def _limiter(bucket: AbstractBucket, max_delay: int, buffer_ms: int, async_wrapper: bool) -> Limiter | AsyncLimiter:
    options = {"raise_when_fail": False, "max_delay": max_delay, "retry_until_max_delay": True, "buffer_ms": buffer_ms}
    if async_wrapper:
        return Limiter(BucketAsyncWrapper(bucket), **options)
    return Limiter(bucket, **options)
