"""Sliding-window rate limiting, async first (asyncio and trio), with a generated sync twin.

Async names carry the ``Async`` prefix; sync names are v3's (``Limiter``, ``InMemoryBucket``).
Every name v3.9 exported is here too (``_v3``, ``_multiprocess``, ``limiter_factory``).
"""

from __future__ import annotations

from . import limiter_factory
from ._async import (
    AsyncAbstractBucket,
    AsyncAbstractClock,
    AsyncBucketFactory,
    AsyncInMemoryBucket,
    AsyncKeyedBucket,
    AsyncLimiter,
    AsyncMonotonicClock,
    AsyncPostgresBucket,
    AsyncPostgresClock,
    AsyncRedisBucket,
    AsyncReservation,
    AsyncSQLiteBucket,
    AsyncSQLiteClock,
    AsyncTimeClock,
)
from ._compat import Limiter, RedisBucket
from ._errors import BackendError, BucketFullException, LimiterDelayException
from ._hooks import LimiterHooks
from ._multiprocess import MultiprocessBucket
from ._rate import Duration, Rate, RateItem, validate_rate_list
from ._state import LimitState, RateState
from ._sync import (
    AbstractBucket,
    AbstractClock,
    BucketFactory,
    InMemoryBucket,
    KeyedBucket,
    MonotonicClock,
    PostgresBucket,
    PostgresClock,
    Reservation,
    SQLiteBucket,
    SQLiteClock,
    TimeClock,
)
from ._sync.factory import SingleBucketFactory
from ._v3 import (
    BucketAsyncWrapper,
    DecoratorWrapper,
    ItemMapping,
    Leaker,
    PgQueries,
    SQLiteQueries,
    TimeAsyncClock,
    binary_search,
    combined_lock,
    dedicated_sqlite_clock_connection,
    id_generator,
)

__all__ = [
    "AbstractBucket",
    "AbstractClock",
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
    "AsyncTimeClock",
    "BackendError",
    "BucketAsyncWrapper",
    "BucketFactory",
    "BucketFullException",
    "DecoratorWrapper",
    "Duration",
    "InMemoryBucket",
    "ItemMapping",
    "KeyedBucket",
    "Leaker",
    "Limiter",
    "LimiterDelayException",
    "LimiterHooks",
    "LimitState",
    "MonotonicClock",
    "MultiprocessBucket",
    "PgQueries",
    "PostgresBucket",
    "PostgresClock",
    "Rate",
    "RateItem",
    "RateState",
    "RedisBucket",
    "Reservation",
    "SQLiteBucket",
    "SQLiteClock",
    "SQLiteQueries",
    "SingleBucketFactory",
    "TimeAsyncClock",
    "TimeClock",
    "binary_search",
    "combined_lock",
    "dedicated_sqlite_clock_connection",
    "id_generator",
    "limiter_factory",
    "validate_rate_list",
]
