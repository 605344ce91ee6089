"""Clocks of both variants, importable as ``pyrate_limiter.clocks`` (and ``.clock``, as v3 wrote)."""

from __future__ import annotations

from ._async.clocks import AsyncAbstractClock, AsyncMonotonicClock, AsyncTimeClock
from ._sync.clocks import AbstractClock, MonotonicClock, TimeClock

__all__ = [
    "AbstractClock",
    "AsyncAbstractClock",
    "AsyncMonotonicClock",
    "AsyncTimeClock",
    "MonotonicClock",
    "TimeClock",
]
