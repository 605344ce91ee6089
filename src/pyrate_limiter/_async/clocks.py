"""Clocks: where an item's timestamp (integer milliseconds) comes from."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable


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


def ns_reader(clock: Any) -> Callable[[], int] | None:
    """The C function under ``clock`` (nanoseconds) if it is exactly one of ours, else ``None``.

    The limiter's hot path then reads the time with no Python call and no awaiting of a clock
    that never waits for anything: ``reader() // 1_000_000`` is ``clock.now()``.
    """
    return _NS_READERS.get(type(clock))


_NS_READERS: dict[type, Callable[[], int]] = {AsyncTimeClock: time.time_ns, AsyncMonotonicClock: time.monotonic_ns}
