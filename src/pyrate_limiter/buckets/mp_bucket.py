"""v3.9's ``pyrate_limiter.buckets.mp_bucket``: re-exports only."""

from __future__ import annotations

from .._multiprocess import MultiprocessBucket
from .._rate import Rate, RateItem

__all__ = ["MultiprocessBucket", "Rate", "RateItem"]
