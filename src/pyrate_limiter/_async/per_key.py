"""Every name its own bucket in a shared backend: what ``AsyncLimiter.per_key(rates, bucket_for)`` routes through."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._concurrency import areader
from .._rate import Rate, RateItem, check_rates
from .clocks import ns_reader
from .factory import AsyncBucketFactory, as_ms

if TYPE_CHECKING:
    from collections.abc import Callable

    from .buckets.base import AsyncAbstractBucket
    from .clocks import AsyncAbstractClock

    BucketFor = Callable[[str, list[Rate]], AsyncAbstractBucket]


class AsyncPerKeyFactory(AsyncBucketFactory):
    """Makes each name's bucket with ``bucket_for(name, rates)`` on its first item, and forgets it when idle.

    The state lives in the backend (a Redis key, SQLite or PostgreSQL rows), which drops it once
    it can no longer count; this factory keeps only the bucket object, and lets it go once no
    item of its name has come for the longest interval. Forgetting costs nothing: the next item
    of that name gets a new object over the same state. The buckets are not closed then, so
    ``bucket_for`` should share one client, pool or connection among them.

    :param rates: the rates of every name, or a function from a name to its rates (tiers).
    """

    def __init__(
        self,
        rates: list[Rate] | Callable[[str], list[Rate]],
        bucket_for: BucketFor,
        clock: AsyncAbstractClock | Any,
    ) -> None:
        if callable(rates):
            self.rates_for = rates
        else:
            shared = check_rates(rates)
            self.rates_for = lambda name: shared
        self.bucket_for = bucket_for
        self.clock = clock
        self._read_ns = ns_reader(clock)
        self._now = areader(clock)
        self._buckets: dict[str, tuple[AsyncAbstractBucket, int]] = {}  # name -> bucket, its longest interval
        self._counts_until: dict[str, int] = {}  # name -> the last ms its newest item may count at

    async def wrap_item(self, name: str, weight: int = 1) -> RateItem:
        read_ns = self._read_ns
        now = read_ns() // 1_000_000 if read_ns is not None else as_ms(await self._now(), self.clock)
        return RateItem(name, now, weight)

    async def get(self, item: RateItem) -> AsyncAbstractBucket:
        name = item.name
        entry = self._buckets.get(name)
        if entry is None:
            with self._routing_lock:  # two threads never make one name's bucket twice
                entry = self._buckets.get(name)
                if entry is None:
                    rates = check_rates(self.rates_for(name))
                    entry = self._buckets[name] = (self.bucket_for(name, rates), max(r.interval for r in rates))
                    self._start_leaking()
        bucket, longest = entry
        self._counts_until[name] = item.timestamp + longest  # the closed window: see _window
        return bucket

    async def route(self, name: str, weight: int) -> tuple[RateItem, AsyncAbstractBucket]:
        item = await self.wrap_item(name, weight)
        return item, await self.get(item)

    def _keep_until(self, name: str, until: int) -> None:
        # A bucket that keeps its pause in this process (in memory, or written against v3) must
        # not be forgotten, pause and all, before the pause ends.
        self._counts_until[name] = max(self._counts_until.get(name, until), until)

    def get_buckets(self) -> list[AsyncAbstractBucket]:
        return [bucket for bucket, _ in list(self._buckets.values())]

    async def _leak_all(self) -> None:
        await super()._leak_all()
        now = as_ms(await self._now(), self.clock)
        with self._routing_lock:
            for name, until in list(self._counts_until.items()):
                if until < now:
                    del self._counts_until[name], self._buckets[name]
