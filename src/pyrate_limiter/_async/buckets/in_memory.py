"""The in-memory bucket: a sliding-window log in this process, the default backend."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..._rate import RateItem, check_pause, check_rates
from ..._window import SlidingLog
from .base import AsyncReservingBucket

if TYPE_CHECKING:
    from ..._rate import Rate, Verdict
    from ..._state import Usage


class AsyncInMemoryBucket(AsyncReservingBucket):
    """Items of one bucket kept in this process: 24 bytes per admitted item, whatever its weight."""

    def __init__(self, rates: list[Rate]) -> None:
        self.rates = check_rates(rates)
        self.failing_rate = None
        self._log = SlidingLog(self.rates)

    async def reserve(self, item: RateItem, max_delay: int | None) -> Verdict:
        return self._log.reserve(item, max_delay)

    async def release(self, item: RateItem) -> None:
        self._log.release(item.name, item.timestamp, item.weight)

    async def pause_until(self, name: str, until: int) -> int:
        check_pause(name, until)
        return self._log.pause(until)

    async def paused_until(self, name: str) -> int:
        return self._log.paused()

    async def waiting(self, item: RateItem) -> int:
        return self._log.waiting(item.timestamp, item.weight)

    async def state(self, item: RateItem) -> tuple[int, Usage]:
        return self._log.state(item.timestamp, item.weight)

    async def leak(self, current_timestamp: int) -> int:
        return self._log.leak(current_timestamp)

    async def flush(self) -> None:
        self._log.flush()
        self.failing_rate = None

    async def count(self) -> int:
        return self._log.count()

    async def peek(self, index: int) -> RateItem | None:
        found = self._log.peek(index)
        return None if found is None else RateItem(found[0], found[1])
