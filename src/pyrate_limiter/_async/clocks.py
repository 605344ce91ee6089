"""Clocks: where an item's timestamp (integer milliseconds) comes from."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod


class AsyncAbstractClock(ABC):
    """Anything with ``now()`` returning integer milliseconds.

    Limiters also accept duck-typed clocks whose ``now()`` is a plain function or a coroutine.
    """

    @abstractmethod
    async def now(self) -> int:
        """The current time in milliseconds."""


class AsyncTimeClock(AsyncAbstractClock):
    """Wall-clock time (``time.time()``): comparable across processes and machines."""

    async def now(self) -> int:
        return time.time_ns() // 1_000_000  # integer arithmetic: cheaper than via a float


class AsyncMonotonicClock(AsyncAbstractClock):
    """Monotonic time: never jumps backwards, but only meaningful inside one process."""

    async def now(self) -> int:
        return time.monotonic_ns() // 1_000_000
