"""Clocks of both variants, importable as ``pyrate_limiter.clocks`` (and ``.clock``, as v3 wrote)."""

from __future__ import annotations

from ._async.buckets.postgres import AsyncPostgresClock
from ._async.buckets.sqlite import AsyncSQLiteClock
from ._async.clocks import AsyncAbstractClock, AsyncMonotonicClock, AsyncTimeClock
from ._sync.buckets.postgres import PostgresClock
from ._sync.buckets.sqlite import SQLiteBucket, SQLiteClock
from ._sync.clocks import AbstractClock, MonotonicClock, TimeClock
from ._v3 import TimeAsyncClock, dedicated_sqlite_clock_connection

__all__ = [
    "AbstractClock",
    "AsyncAbstractClock",
    "AsyncMonotonicClock",
    "AsyncPostgresClock",
    "AsyncSQLiteClock",
    "AsyncTimeClock",
    "MonotonicClock",
    "PostgresClock",
    "SQLiteBucket",
    "SQLiteClock",
    "TimeAsyncClock",
    "TimeClock",
    "dedicated_sqlite_clock_connection",
]
