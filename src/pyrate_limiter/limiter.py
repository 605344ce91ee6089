"""v3.9's ``pyrate_limiter.limiter``: re-exports only."""

from __future__ import annotations

from ._compat import Limiter
from ._errors import BucketFullException, LimiterDelayException
from ._rate import Duration, Rate, RateItem
from ._sync.buckets.base import AbstractBucket
from ._sync.buckets.in_memory import InMemoryBucket
from ._sync.clocks import AbstractClock, TimeClock
from ._sync.factory import BucketFactory, SingleBucketFactory, logger
from ._v3 import DecoratorWrapper, ItemMapping, combined_lock

__all__ = [
    "AbstractBucket",
    "AbstractClock",
    "BucketFactory",
    "BucketFullException",
    "DecoratorWrapper",
    "Duration",
    "InMemoryBucket",
    "ItemMapping",
    "Limiter",
    "LimiterDelayException",
    "Rate",
    "RateItem",
    "SingleBucketFactory",
    "TimeClock",
    "combined_lock",
    "logger",
]
