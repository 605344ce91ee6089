"""Bucket backends, one module each, behind the interface in ``base``."""

from __future__ import annotations

from .base import AsyncAbstractBucket
from .in_memory import AsyncInMemoryBucket

__all__ = ["AsyncAbstractBucket", "AsyncInMemoryBucket"]
