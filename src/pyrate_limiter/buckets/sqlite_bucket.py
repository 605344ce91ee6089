"""v3.9's ``pyrate_limiter.buckets.sqlite_bucket``: re-exports only (``Queries`` is ``SQLiteQueries``)."""

from __future__ import annotations

from .._rate import Rate, RateItem
from .._sync.buckets.base import AbstractBucket
from .._sync.buckets.sqlite import SQLiteBucket
from .._sync.factory import logger
from .._v3 import SQLiteQueries
from .._v3 import SQLiteQueries as Queries

__all__ = ["AbstractBucket", "Queries", "Rate", "RateItem", "SQLiteBucket", "SQLiteQueries", "logger"]
