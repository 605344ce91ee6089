"""Bucket backends, one module each, behind the interface in ``base``."""

from __future__ import annotations

from .base import AsyncAbstractBucket, AsyncReservingBucket
from .in_memory import AsyncInMemoryBucket
from .keyed import AsyncKeyedBucket
from .postgres import AsyncPostgresBucket, AsyncPostgresClock
from .redis import AsyncRedisBucket
from .sqlite import AsyncSQLiteBucket, AsyncSQLiteClock

__all__ = [
    "AsyncAbstractBucket",
    "AsyncReservingBucket",
    "AsyncInMemoryBucket",
    "AsyncKeyedBucket",
    "AsyncPostgresBucket",
    "AsyncPostgresClock",
    "AsyncRedisBucket",
    "AsyncSQLiteBucket",
    "AsyncSQLiteClock",
]
