"""The bucket interface: what a limiter needs from any storage, ours or a user's."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

from ..._rate import RateItem, check_name, check_pause, check_weight
from ..._window import NEVER, span

if TYPE_CHECKING:
    from ..._rate import Rate, Verdict
    from ..._state import Usage


class AsyncAbstractBucket(ABC):
    """Storage for one bucket's items under a list of rates, checked and recorded atomically.

    A custom bucket implements ``put``, ``leak``, ``flush``, ``count`` and ``peek``; ``waiting``,
    ``reserve`` and ``release`` then work from those, and ``pause_until`` holds its pause in this
    process. Our buckets override them so that a decision and its record are one atomic step,
    and keep a pause where every process sharing the bucket sees it.
    """

    rates: list[Rate]
    failing_rate: Rate | None = None
    _paused: int = -(2**62)  # the in-process pause of a bucket that stores none itself (this: none)

    @abstractmethod
    async def put(self, item: RateItem) -> bool:
        """Record ``item`` at its timestamp if every rate allows its whole weight, else nothing.

        :return: whether it was recorded; on ``False``, ``failing_rate`` names the rate that refused.
        """

    @abstractmethod
    async def leak(self, current_timestamp: int) -> int:
        """Drop items too old to count at ``current_timestamp``; return how many units left."""

    @abstractmethod
    async def flush(self) -> None:
        """Forget every item."""

    @abstractmethod
    async def count(self) -> int:
        """Units of weight recorded (an item of weight 3 counts 3)."""

    @abstractmethod
    async def peek(self, index: int) -> RateItem | None:
        """The unit ``index`` places from the newest (0 is the newest), or ``None``."""

    async def waiting(self, item: RateItem) -> int:
        """Milliseconds from ``item.timestamp`` until it would fit; ``-1`` if it never can."""
        wait = max(0, self._paused - item.timestamp)
        for rate in self.rates:
            if item.weight > rate.limit:
                return NEVER
            bound = await self.peek(rate.limit - item.weight)
            if bound is not None:
                wait = max(wait, bound.timestamp + span(rate.interval) - item.timestamp)
        return wait

    async def state(self, item: RateItem) -> tuple[int, Usage]:
        """``waiting(item)``, and per rate: the rate, units counted at ``item.timestamp``, ms until one frees.

        Ours answer in one atomic step; this default, for buckets written against v3, reads
        ``waiting`` and then the units newest first with ``peek``.
        """
        t, wait = item.timestamp, await self.waiting(item)
        longest = max(span(rate.interval) for rate in self.rates)
        stamps: list[int] = []
        while (unit := await self.peek(len(stamps))) is not None and unit.timestamp > t - longest:
            stamps.append(unit.timestamp)
        usage = []
        for rate in self.rates:
            counted = [stamp for stamp in stamps if stamp > t - span(rate.interval)]
            usage.append((rate, len(counted), min(counted) + span(rate.interval) - t if counted else 0))
        return wait, usage

    async def reserve(self, item: RateItem, max_delay: int | None) -> Verdict:
        """Record ``item`` now or, within ``max_delay`` ms, at the earliest time it fits.

        :return: ``(delay, None)`` when recorded at ``item.timestamp + delay`` (ours may say
            ``(delay, None, at)``: see ``Verdict``); otherwise ``(wait, rate)``: the wait it
            needed (``-1``: never) and the rate that refused it.
        """
        if item.timestamp >= self._paused and await self.put(item):
            return 0, None
        rate = self.failing_rate or self.rates[0]
        wait = await self.waiting(item)
        if max_delay is None or wait == NEVER or wait > max_delay:
            return wait, rate
        # A bucket written against v3 has no atomic reservation: record the item in the future.
        if await self.put(RateItem(item.name, item.timestamp + wait, item.weight)):
            return wait, None
        return wait, self.failing_rate or rate

    async def pause_until(self, name: str, until: int) -> int:
        """Admit nothing under ``name`` before ``until`` (ms on the items' clock) for every caller
        sharing the bucket; a later end already set stays.

        This default keeps the pause in this process, for buckets written against v3.

        :return: the end now in force.
        """
        check_pause(name, until)
        self._paused = max(self._paused, until)
        return self._paused

    async def paused_until(self, name: str) -> int:
        """When the pause on ``name`` ends (ms on the items' clock): a time already past, or 0, when none holds."""
        return max(0, self._paused)

    async def release(self, item: RateItem) -> None:  # noqa: B027 - optional, v3 buckets lack it
        """Give back a reservation recorded at ``item.timestamp``; a no-op where unsupported."""

    async def aclose(self) -> None:  # noqa: B027 - optional: most buckets own nothing
        """Release what the bucket opened itself; a bucket never closes a connection it was given."""


class AsyncReservingBucket(AsyncAbstractBucket):
    """A bucket whose one atomic step is ``reserve``: ``put`` is a reservation allowed no wait.

    All of ours derive from it, so that admitting and reserving can never drift apart.
    """

    @abstractmethod
    async def reserve(self, item: RateItem, max_delay: int | None) -> Verdict:
        """Record ``item`` now or, within ``max_delay`` ms, at the earliest time it fits (see the base)."""

    async def put(self, item: RateItem) -> bool:
        check_name(item.name)  # the names and weights every backend takes, the same on each
        if type(item.weight) is not int or item.weight < 0:
            check_weight(item.weight)
        self.failing_rate = (await self.reserve(item, None))[1]
        return self.failing_rate is None
