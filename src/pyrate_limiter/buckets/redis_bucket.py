"""v3.9's ``pyrate_limiter.buckets.redis_bucket``: re-exports only."""

from __future__ import annotations

from .._compat import RedisBucket
from .._rate import Rate, RateItem
from .._sync.buckets.base import AbstractBucket
from .._v3 import LuaScript, id_generator

__all__ = ["AbstractBucket", "LuaScript", "Rate", "RateItem", "RedisBucket", "id_generator"]
