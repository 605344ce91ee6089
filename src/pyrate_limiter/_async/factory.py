"""Bucket factories: route each item to its bucket, and run the leak housekeeping."""

from __future__ import annotations

import logging
import math
import weakref
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

from .._concurrency import AsyncEvent, AsyncRoutingLock, AsyncTaskGroup, areader
from .._rate import RateItem
from .clocks import AsyncTimeClock, ns_reader

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from typing_extensions import Self

    from .buckets.base import AsyncAbstractBucket
    from .clocks import AsyncAbstractClock

logger = logging.getLogger("pyrate_limiter")
_new_item = object.__new__  # a RateItem with no __init__ run: see AsyncSingleBucketFactory.route


class AsyncBucketFactory(ABC):
    """Stamps items with a time and routes them to buckets; subclass it with your routing.

    Buckets given to ``schedule_leak`` (or made by ``create``) are leaked every
    ``leak_interval`` ms. Leaking only frees memory of idle buckets: every put already trims
    what it passes over. The leak runs in a daemon thread (sync variant) or in a task while
    the factory or its limiter is entered with ``async with`` (async variant); ``close()``
    stops it.
    """

    leak_interval: int = 10_000
    _leak: _Leaker
    _routing_lock: AsyncRoutingLock

    def __new__(cls, *args: Any, **kwargs: Any) -> Self:
        # State made here, not in __init__: subclasses following the v3 docs never call ours.
        factory = super().__new__(cls)
        factory._leak = _Leaker()
        factory._routing_lock = AsyncRoutingLock()
        return factory

    @abstractmethod
    async def wrap_item(self, name: str, weight: int = 1) -> RateItem:
        """Stamp a new item with the current time."""

    @abstractmethod
    async def get(self, item: RateItem) -> AsyncAbstractBucket:
        """The bucket ``item`` belongs in."""

    async def route(self, name: str, weight: int) -> tuple[RateItem, AsyncAbstractBucket]:
        """Stamp and route one item: ``wrap_item`` then ``get``.

        The sync variant holds a lock meanwhile, so a factory that makes buckets on demand never
        makes two for one name. Override it only to route faster than that.
        """
        with self._routing_lock:
            item = await self.wrap_item(name, weight)
            return item, await self.get(item)

    def _keep_until(self, name: str, until: int) -> None:  # noqa: B027 - most factories forget nothing
        """A pause on ``name`` ends at ``until``: a factory that forgets idle buckets keeps it till then."""

    def create(self, *args: Any, **kwargs: Any) -> AsyncAbstractBucket:
        """Make a bucket and schedule its leak: ``create([clock,] bucket_class, *args, **kwargs)``.

        Without a clock, the factory's ``clock`` attribute is used, or wall-clock time.
        """
        if args and isinstance(args[0], type):
            clock: Any = getattr(self, "clock", None) or AsyncTimeClock()
            bucket_class, *rest = args
        else:
            clock, bucket_class, *rest = args
        bucket: AsyncAbstractBucket = bucket_class(*rest, **kwargs)
        self.schedule_leak(bucket, clock)
        return bucket

    def schedule_leak(self, bucket: AsyncAbstractBucket, clock: AsyncAbstractClock | Any) -> None:
        """Leak ``bucket`` every ``leak_interval`` ms at the time ``clock`` tells."""
        self._leak.buckets[bucket] = (clock, areader(clock))
        self._start_leaking()

    def _start_leaking(self) -> None:
        """Start the leak loop, once: it calls ``_leak_all`` every ``leak_interval`` ms."""
        leaker = self._leak
        if not leaker.started:
            leaker.started = True
            leaker.tasks.start_soon(_leak_loop, weakref.ref(self), leaker.closed)

    def get_buckets(self) -> list[AsyncAbstractBucket]:
        """The buckets whose leak is scheduled."""
        return list(self._leak.buckets)

    def dispose(self, bucket: AsyncAbstractBucket | int) -> bool:
        """Stop leaking ``bucket`` (or the bucket whose ``id()`` this is, as v3 allowed).

        :return: whether it was scheduled.
        """
        if isinstance(bucket, int):
            bucket = next((known for known in self._leak.buckets if id(known) == bucket), None)  # type: ignore[assignment]
        return self._leak.buckets.pop(bucket, None) is not None  # type: ignore[arg-type]

    async def aclose(self) -> None:
        """Stop the leak and wait for it to end. Scheduling again starts a new one."""
        leaker, self._leak = self._leak, _Leaker()
        leaker.closed.set()
        await leaker.tasks.join()

    async def __aenter__(self) -> Self:
        await self._leak.tasks.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        leaker = self._leak
        await self.aclose()
        await leaker.tasks.__aexit__(*exc_info)

    async def _leak_all(self) -> None:
        for bucket, (clock, now) in list(self._leak.buckets.items()):
            try:
                await bucket.leak(as_ms(await now(), clock))
            except Exception:
                # Housekeeping must outlive a backend blip; the next put reports the outage.
                logger.warning("leaking bucket %r failed", bucket, exc_info=True)


class AsyncSingleBucketFactory(AsyncBucketFactory):
    """What a limiter built from rates or from one bucket routes through."""

    def __init__(self, bucket: AsyncAbstractBucket, clock: AsyncAbstractClock | Any) -> None:
        self.bucket = bucket
        self.clock = clock
        self._read_ns = ns_reader(clock)
        self._now = areader(clock)
        self.schedule_leak(bucket, clock)

    async def wrap_item(self, name: str, weight: int = 1) -> RateItem:
        return RateItem(name, as_ms(await self._now(), self.clock), weight)

    async def get(self, item: RateItem) -> AsyncAbstractBucket:
        return self.bucket

    async def route(self, name: str, weight: int) -> tuple[RateItem, AsyncAbstractBucket]:
        # One bucket, no user code: nothing to lock, one call less per acquire. The item is made
        # without calling RateItem: its __init__ is a Python call, dearer than the three stores.
        item = _new_item(RateItem)
        item.name = name
        item.weight = weight
        read_ns = self._read_ns
        if read_ns is not None:
            item.timestamp = read_ns() // 1_000_000
            return item, self.bucket
        now = await self._now()
        if type(now) is not int:  # a float, or no time at all
            now = as_ms(now, self.clock)
        item.timestamp = now
        return item, self.bucket


class _Leaker:
    """A factory's leak schedule: which buckets, at what clock, and how to stop."""

    def __init__(self) -> None:
        self.buckets: dict[AsyncAbstractBucket, tuple[Any, Callable[[], Awaitable[Any]]]] = {}  # clock, its now
        self.tasks = AsyncTaskGroup()
        self.closed = AsyncEvent()
        self.started = False


def as_ms(now: Any, clock: Any) -> int:
    """A clock's reading as whole ms, refusing what is no time at all (a str, NaN, a bool)."""
    if type(now) is int:
        return now
    if isinstance(now, int | float) and not isinstance(now, bool) and math.isfinite(now):
        return int(now)
    raise TypeError(f"{clock!r}.now() must return milliseconds as an int, got {now!r}")


async def _leak_loop(factory_ref: weakref.ref[AsyncBucketFactory], closed: AsyncEvent) -> None:
    # Holds the factory only while leaking, so a forgotten factory ends its own loop.
    while True:
        factory = factory_ref()
        if factory is None:
            return
        interval = factory.leak_interval / 1000
        del factory
        if await closed.wait(interval):
            return
        factory = factory_ref()
        if factory is None:
            return
        await factory._leak_all()
        del factory
