"""v3.9's ``pyrate_limiter.buckets.in_memory_bucket``: re-exports only."""

from __future__ import annotations

from .._rate import Rate, RateItem
from .._sync.buckets.base import AbstractBucket
from .._sync.buckets.in_memory import InMemoryBucket
from .._v3 import binary_search

__all__ = ["AbstractBucket", "InMemoryBucket", "Rate", "RateItem", "binary_search"]
