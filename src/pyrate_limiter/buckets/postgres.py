"""v3.9's ``pyrate_limiter.buckets.postgres``: re-exports only (``Queries`` is ``PgQueries``)."""

from __future__ import annotations

from .._rate import Rate, RateItem
from .._sync.buckets.base import AbstractBucket
from .._sync.buckets.postgres import PostgresBucket
from .._v3 import PgQueries
from .._v3 import PgQueries as Queries

__all__ = ["AbstractBucket", "PgQueries", "PostgresBucket", "Queries", "Rate", "RateItem"]
