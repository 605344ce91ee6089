"""v3.9's ``pyrate_limiter.abstracts``: the interfaces, re-exported from where they live now."""

from __future__ import annotations

from .bucket import AbstractBucket, BucketFactory, Leaker
from .clock import AbstractClock
from .rate import Duration, Rate, RateItem
from .wrappers import BucketAsyncWrapper

__all__ = [
    "AbstractBucket",
    "AbstractClock",
    "BucketAsyncWrapper",
    "BucketFactory",
    "Duration",
    "Leaker",
    "Rate",
    "RateItem",
]
