"""The async variant: the source ``_sync`` is generated from."""

from __future__ import annotations

from .buckets import (
    AsyncAbstractBucket,
    AsyncInMemoryBucket,
    AsyncKeyedBucket,
    AsyncPostgresBucket,
    AsyncPostgresClock,
    AsyncRedisBucket,
)
from .buckets.sqlite import AsyncSQLiteBucket, AsyncSQLiteClock
from .clocks import AsyncAbstractClock, AsyncMonotonicClock, AsyncTimeClock
from .factory import AsyncBucketFactory, AsyncSingleBucketFactory
from .limiter import AsyncLimiter
from .reservation import AsyncReservation

__all__ = [
    "AsyncAbstractBucket",
    "AsyncAbstractClock",
    "AsyncBucketFactory",
    "AsyncInMemoryBucket",
    "AsyncKeyedBucket",
    "AsyncLimiter",
    "AsyncMonotonicClock",
    "AsyncPostgresBucket",
    "AsyncPostgresClock",
    "AsyncRedisBucket",
    "AsyncReservation",
    "AsyncSQLiteBucket",
    "AsyncSQLiteClock",
    "AsyncSingleBucketFactory",
    "AsyncTimeClock",
]
