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
    AsyncTimeClock,
)
from ._compat import Limiter
from ._errors import BackendError, BucketFullException, LimiterDelayException
from ._rate import Duration, Rate, RateItem, validate_rate_list
from ._sync import AbstractBucket, AbstractClock, BucketFactory, InMemoryBucket, MonotonicClock, TimeClock

__all__ = [
    "AbstractBucket",
    "AbstractClock",
    "AsyncAbstractBucket",
    "AsyncAbstractClock",
    "AsyncBucketFactory",
    "AsyncInMemoryBucket",
    "AsyncLimiter",
    "AsyncMonotonicClock",
    "AsyncTimeClock",
    "BackendError",
    "BucketFactory",
    "BucketFullException",
    "Duration",
    "InMemoryBucket",
    "Limiter",
    "LimiterDelayException",
    "MonotonicClock",
    "Rate",
    "RateItem",
    "TimeClock",
    "validate_rate_list",
]
