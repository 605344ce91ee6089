"""v3.9's ``pyrate_limiter.abstracts.wrappers``: re-exports only."""

from __future__ import annotations

from .._rate import RateItem
from .._sync.buckets.base import AbstractBucket
from .._v3 import BucketAsyncWrapper

__all__ = ["AbstractBucket", "BucketAsyncWrapper", "RateItem"]
