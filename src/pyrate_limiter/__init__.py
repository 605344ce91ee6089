"""Sliding-window rate limiting, async first (asyncio and trio), with a generated sync twin.

Async names carry the ``Async`` prefix; sync names are v3's (``Limiter``, ``InMemoryBucket``).
"""

from __future__ import annotations

from ._async import (
    AsyncAbstractBucket,
    AsyncAbstractClock,
    AsyncBucketFactory,
    AsyncInMemoryBucket,
    AsyncLimiter,
    AsyncMonotonicClock,
    AsyncPostgresBucket,
    AsyncPostgresClock,
    AsyncRedisBucket,
    AsyncSQLiteBucket,
    AsyncSQLiteClock,
    AsyncTimeClock,
)
from ._compat import Limiter, RedisBucket
from ._errors import BackendError, BucketFullException, LimiterDelayException
from ._rate import Duration, Rate, RateItem, validate_rate_list
from ._sync import (
    AbstractBucket,
    AbstractClock,
    BucketFactory,
    InMemoryBucket,
    MonotonicClock,
    PostgresBucket,
    PostgresClock,
    SQLiteBucket,
    SQLiteClock,
    TimeClock,
)

__all__ = [
    "AbstractBucket",
    "AbstractClock",
    "AsyncAbstractBucket",
    "AsyncAbstractClock",
    "AsyncBucketFactory",
    "AsyncInMemoryBucket",
    "AsyncLimiter",
    "AsyncMonotonicClock",
    "AsyncPostgresBucket",
    "AsyncPostgresClock",
    "AsyncRedisBucket",
    "AsyncSQLiteBucket",
    "AsyncSQLiteClock",
    "AsyncTimeClock",
    "BackendError",
    "BucketFactory",
    "BucketFullException",
    "Duration",
    "InMemoryBucket",
    "Limiter",
    "LimiterDelayException",
    "MonotonicClock",
    "PostgresBucket",
    "PostgresClock",
    "Rate",
    "RateItem",
    "RedisBucket",
    "SQLiteBucket",
    "SQLiteClock",
    "TimeClock",
    "validate_rate_list",
]
