"""The per-key in-memory bucket: one sliding-window log per name, dropped once empty."""

from __future__ import annotations

import heapq
import threading
from typing import TYPE_CHECKING, Any

from ..._forking import hold_at_fork
from ..._rate import Rate, RateItem, check_pause, check_rates
from ..._window import SlidingLog
from .base import AsyncReservingBucket

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..._rate import Verdict
    from ..._state import Usage

    RatesFor = Callable[[str], list[Rate]]

_SWEEP_CHUNK = 1024  # logs leaked per hold of the lock: a sweep never stalls acquires for long


class AsyncKeyedBucket(AsyncReservingBucket):
    """Every name its own limit, in this process: ``AsyncLimiter.per_key(rates)`` uses it.

    A name's log is made on its first item (or pause), with the rates ``rates`` gives for it, and
    dropped by ``leak`` once nothing in it counts any more and no pause holds it: an empty log
    decides like a fresh one, so memory follows the names active within the longest interval.
    Finding a name's log and deciding in it happen under one lock, so a log is never dropped
    while an item goes into it.

    :param rates: the rates of every name, or a function from a name to its rates (tiers).
    """

    def __init__(self, rates: list[Rate] | RatesFor) -> None:
        if callable(rates):
            self.rates_for: RatesFor = rates
            self.rates: list[Rate] = []  # per name: see rates_for
        else:
            shared = check_rates(rates)
            self.rates_for = lambda name: shared
            self.rates = shared
        self.failing_rate = None
        self._logs: dict[Any, SlidingLog] = {}
        self._most = 0  # the most logs held since the dict was last rebuilt
        self._lock = threading.Lock()  # both variants: no await happens while it is held
        hold_at_fork(self)  # its logs are only used under this lock: fork takes it, not theirs

    async def reserve(self, item: RateItem, max_delay: int | None) -> Verdict:
        with self._lock:
            log = self._logs.get(item.name)
            if log is None:
                log = self._logs[item.name] = self._new_log(item.name)
            return log.reserve(item, max_delay)

    async def release(self, item: RateItem) -> None:
        with self._lock:
            log = self._logs.get(item.name)
            if log is not None:
                log.release(item.name, item.timestamp, item.weight)

    async def pause_until(self, name: str, until: int) -> int:
        """Pause ``name`` alone: every name has its own limit, so its own pause."""
        check_pause(name, until)
        with self._lock:
            log = self._logs.get(name)
            if log is None:
                log = self._logs[name] = self._new_log(name)
            return log.pause(until)

    async def paused_until(self, name: str) -> int:
        with self._lock:
            log = self._logs.get(name)
            return 0 if log is None else log.paused()

    async def waiting(self, item: RateItem) -> int:
        with self._lock:
            log = self._logs.get(item.name) or self._new_log(item.name)
            return log.waiting(item.timestamp, item.weight)

    async def state(self, item: RateItem) -> tuple[int, Usage]:
        with self._lock:
            log = self._logs.get(item.name) or self._new_log(item.name)
            return log.state(item.timestamp, item.weight)

    async def leak(self, current_timestamp: int) -> int:
        """Trim every name's log at ``current_timestamp``, and drop the logs left empty."""
        leaked = 0
        names = list(self._logs)
        for start in range(0, len(names), _SWEEP_CHUNK):
            with self._lock:
                for name in names[start : start + _SWEEP_CHUNK]:
                    log = self._logs.get(name)
                    if log is None:
                        continue
                    leaked += log.leak(current_timestamp)
                    # Empty and unpaused, its floor behind current_timestamp: a fresh log decides alike.
                    if log.count() == 0 and log.paused() <= current_timestamp:
                        del self._logs[name]
        with self._lock:
            # A dict never shrinks as keys go: once most have gone, copy what is left.
            self._most = max(self._most, len(names))
            if self._most > _SWEEP_CHUNK and len(self._logs) < self._most // 4:
                self._logs, self._most = dict(self._logs), len(self._logs)
        return leaked

    async def flush(self) -> None:
        with self._lock:
            self._logs.clear()
        self.failing_rate = None

    async def count(self) -> int:
        with self._lock:
            return sum(log.count() for log in self._logs.values())

    async def peek(self, index: int) -> RateItem | None:
        """The unit ``index`` places from the newest, over every name's log."""
        if index < 0:
            return None
        with self._lock:
            logs = list(self._logs.values())
            # Each log's units newest first, merged: (-timestamp, log, unit index) on a heap.
            heap = [(-unit[1], n, 0) for n, log in enumerate(logs) if (unit := log.peek(0)) is not None]
            heapq.heapify(heap)
            for _ in range(index):
                if not heap:
                    return None
                _, n, i = heapq.heappop(heap)
                unit = logs[n].peek(i + 1)
                if unit is not None:
                    heapq.heappush(heap, (-unit[1], n, i + 1))
            if not heap:
                return None
            _, n, i = heap[0]
            found = logs[n].peek(i)
            assert found is not None
            return RateItem(found[0], found[1])

    def keys(self) -> int:
        """How many names have a log: those whose items may still count."""
        return len(self._logs)

    def _new_log(self, name: Any) -> SlidingLog:
        return SlidingLog(check_rates(self.rates_for(name)), guarded=True)
