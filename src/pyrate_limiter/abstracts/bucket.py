"""v3.9's ``pyrate_limiter.abstracts.bucket``: re-exports only."""

from __future__ import annotations

from .._rate import Rate, RateItem
from .._sync.buckets.base import AbstractBucket
from .._sync.clocks import AbstractClock
from .._sync.factory import BucketFactory, logger
from .._v3 import Leaker

__all__ = ["AbstractBucket", "AbstractClock", "BucketFactory", "Leaker", "Rate", "RateItem", "logger"]
