"""v3.9's ``pyrate_limiter.buckets``: the sync buckets of every backend, re-exported."""

from __future__ import annotations

from .in_memory_bucket import InMemoryBucket
from .mp_bucket import MultiprocessBucket
from .postgres import PgQueries, PostgresBucket
from .redis_bucket import RedisBucket
from .sqlite_bucket import SQLiteBucket, SQLiteQueries

__all__ = [
    "InMemoryBucket",
    "MultiprocessBucket",
    "PgQueries",
    "PostgresBucket",
    "RedisBucket",
    "SQLiteBucket",
    "SQLiteQueries",
]
