"""Places held in a bucket ahead of time: ``AsyncLimiter.reserve`` and ``AsyncLimiter.acquire``."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from .._concurrency import ashielded, asleep
from .._rate import RateItem, recorded_at

if TYPE_CHECKING:
    from .._rate import Verdict
    from .buckets.base import AsyncAbstractBucket
    from .limiter import AsyncLimiter


class AsyncReservation:
    """An item's place in a bucket from ``at`` on (ms, on the limiter's clock), as Go's ``rate.Reservation``.

    The place counts from the moment it is reserved, so the limit holds whatever its holder does:
    ``wait`` sleeps until its time, ``cancel`` gives back a place whose time has not come (one
    that has come is spent), and cancelling twice or late does nothing.

    :ivar at: when the place is the item's: the stamp it is recorded at (on the server's clock,
        for a bucket deciding at it).
    :ivar delay_ms: how long after the reservation that is.
    """

    def __init__(self, bucket: AsyncAbstractBucket, item: RateItem, verdict: Verdict) -> None:
        self.at = recorded_at(item, verdict)
        delay = self.delay_ms = verdict[0]
        self.name = item.name
        self.weight = item.weight
        self._bucket = bucket
        self._due = time.monotonic() + delay / 1000
        self._cancelled = False

    async def wait(self) -> None:
        """Sleep until the place's time (return at once if it has come).

        Cancelled while it sleeps, it gives the place back first.
        :raises RuntimeError: the reservation was cancelled.
        """
        if self._cancelled:
            raise RuntimeError(f"{self!r} was cancelled: there is no place to wait for")
        ahead = self._due - time.monotonic()
        if ahead > 0:
            try:
                await asleep(ahead)
            except BaseException:
                await ashielded(self.cancel)
                raise

    async def cancel(self) -> None:
        """Give the place back to those who can use it, unless its time has come."""
        if self._cancelled:
            return
        self._cancelled = True
        if time.monotonic() < self._due:
            await self._bucket.release(RateItem(self.name, self.at, self.weight))

    def __repr__(self) -> str:
        where = f"at={self.at}, delay_ms={self.delay_ms}"
        return f"{type(self).__name__}(name={self.name!r}, weight={self.weight}, {where})"


class AsyncAdmission:
    """``async with limiter.acquire(name, weight):`` the block runs once the item is admitted.

    Entering waits within ``max_delay`` as ``try_acquire`` does (behind a pause set meanwhile too)
    and raises on refusal, whatever the limiter's ``raise_when_fail``; leaving gives nothing back,
    however the block ends: the request was made.
    """

    def __init__(self, limiter: AsyncLimiter, name: str, weight: int, max_delay: Any) -> None:
        self._limiter, self._name, self._weight, self._max_delay = limiter, name, weight, max_delay

    async def __aenter__(self) -> AsyncReservation:
        return await self._limiter._admit(self._name, self._weight, self._max_delay)

    async def __aexit__(self, *exc_info: object) -> None:
        return None
