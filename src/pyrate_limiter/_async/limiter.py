"""The limiter: admit, refuse or delay each acquire, as a call, a decorator or a context."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from .._concurrency import adecorate, ashielded, asleep
from .._errors import BucketFullException, LimiterDelayException
from .._rate import Rate, RateItem
from .._window import FOREVER, NEVER
from .buckets.base import AsyncAbstractBucket
from .buckets.in_memory import AsyncInMemoryBucket
from .clocks import AsyncTimeClock
from .factory import AsyncBucketFactory, AsyncSingleBucketFactory
from .reservation import AsyncAdmission, AsyncReservation

if TYPE_CHECKING:
    from collections.abc import Callable

    from typing_extensions import Self

    from .clocks import AsyncAbstractClock

    _Wrap = Callable[[Callable[..., Any]], Callable[..., Any]]

_LIMITER_DEFAULT: Any = object()  # "use the limiter's max_delay"


class AsyncLimiter:
    """Admits items into buckets: raising, returning ``False`` or waiting when they are full.

    :param argument: a ``Rate``, a list of rates (an in-memory bucket is made), a bucket, or a
        bucket factory.
    :param clock: where timestamps come from when ``argument`` is not a factory.
    :param raise_when_fail: raise ``BucketFullException`` / ``LimiterDelayException`` on
        refusal; otherwise return ``False``.
    :param max_delay: how long (ms) an acquire may wait for room; ``None`` never waits and
        ``math.inf`` waits as long as it takes. The wait is exact: the item's place is reserved
        at the moment it fits.
    """

    def __init__(
        self,
        argument: Rate | list[Rate] | AsyncAbstractBucket | AsyncBucketFactory,
        clock: AsyncAbstractClock | Any = None,
        raise_when_fail: bool = True,
        max_delay: float | None = None,
    ) -> None:
        self.max_delay = _check_max_delay(max_delay)
        self.raise_when_fail = raise_when_fail
        if clock is not None and not callable(getattr(clock, "now", None)):
            raise TypeError(f"clock must have a now() returning ms, got {clock!r}")
        self.bucket_factory = _factory_for(argument, clock if clock is not None else AsyncTimeClock())
        self._route = self.bucket_factory.route

    async def try_acquire(self, name: str, weight: int = 1, max_delay: float | None = _LIMITER_DEFAULT) -> bool:
        """Admit one item of ``weight`` under ``name``, waiting up to ``max_delay`` ms if allowed.

        :param max_delay: overrides the limiter's ``max_delay`` for this call.
        :return: ``True`` once admitted; ``False`` when refused and ``raise_when_fail`` is off.
        :raises BucketFullException: refused, with no wait allowed (or the weight exceeds a limit).
        :raises LimiterDelayException: the wait needed is longer than ``max_delay``.
        """
        if type(weight) is not int:
            raise TypeError(f"weight must be an int, got {weight!r}")
        if weight < 0:
            raise ValueError(f"weight must be >= 0, got {weight}")
        if max_delay is _LIMITER_DEFAULT:
            max_delay = self.max_delay
        elif max_delay is not None:
            max_delay = _check_max_delay(max_delay)
        item, bucket = await self._route(name, weight)
        try:
            delay, rate = await bucket.reserve(item, max_delay)
        except TypeError as error:
            # The MRO, not isinstance: the compat layer registers each variant's buckets with the other's.
            if AsyncAbstractBucket in type(bucket).__mro__:
                raise
            raise TypeError(f"{bucket!r} is a bucket of the other variant than {self!r}") from error
        if rate is None:
            if delay:
                await self._wait_for(bucket, item, delay)
            return True
        if not self.raise_when_fail:
            return False
        raise _refusal(item, rate, delay, max_delay)

    async def reserve(
        self, name: str, weight: int = 1, max_delay: float | None = _LIMITER_DEFAULT
    ) -> AsyncReservation | None:
        """Record an item of ``weight`` at the earliest time it fits within ``max_delay``, and hand back its place.

        Nothing is slept: ``await reservation.wait()`` sleeps until the place's time, and
        ``await reservation.cancel()`` gives back a place whose time has not come.

        :return: the reservation; ``None`` when refused and ``raise_when_fail`` is off.
        :raises BucketFullException: refused with no wait allowed, or the weight never fits.
        :raises LimiterDelayException: the place is further off than ``max_delay``. A refusal
            records nothing.
        """
        return await self._reserve(name, weight, max_delay, raising=self.raise_when_fail)

    def acquire(self, name: str, weight: int = 1, max_delay: float | None = _LIMITER_DEFAULT) -> AsyncAdmission:
        """``async with limiter.acquire(name, weight):`` runs the block once admitted (see ``AsyncAdmission``)."""
        return AsyncAdmission(self, name, weight, max_delay)

    async def _reserve(self, name: str, weight: int, max_delay: Any, *, raising: bool) -> AsyncReservation | None:
        # try_acquire's first steps, written out there too: its hot path spends no call on sharing them.
        if type(weight) is not int:
            raise TypeError(f"weight must be an int, got {weight!r}")
        if weight < 0:
            raise ValueError(f"weight must be >= 0, got {weight}")
        max_delay = self.max_delay if max_delay is _LIMITER_DEFAULT else _check_max_delay(max_delay)
        item, bucket = await self._route(name, weight)
        delay, rate = await bucket.reserve(item, max_delay)
        if rate is None:
            return AsyncReservation(bucket, item, delay)
        if not raising:
            return None
        raise _refusal(item, rate, delay, max_delay)

    def as_decorator(self) -> Callable[[Callable[..., Any]], _Wrap]:
        """``limiter.as_decorator()(mapping)(func)``: admit each call of ``func`` first.

        ``mapping`` gets the call's arguments and returns the item's name, or ``(name, weight)``.
        A refused call never runs ``func``: it raises, or returns ``None`` when
        ``raise_when_fail`` is off.
        """

        def with_mapping(mapping: Callable[..., Any]) -> _Wrap:
            def wrap(func: Callable[..., Any]) -> Callable[..., Any]:
                return adecorate(self.try_acquire, mapping, func)

            return wrap

        return with_mapping

    def buckets(self) -> list[AsyncAbstractBucket]:
        """The buckets this limiter's factory leaks."""
        return self.bucket_factory.get_buckets()

    def dispose(self, bucket: AsyncAbstractBucket | int) -> bool:
        """Stop leaking ``bucket`` (or the bucket with this ``id()``); return whether it was scheduled."""
        return self.bucket_factory.dispose(bucket)

    async def aclose(self) -> None:
        """Stop the factory's leak. Buckets stay open: their connections belong to whoever made them."""
        await self.bucket_factory.aclose()

    async def __aenter__(self) -> Self:
        await self.bucket_factory.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.bucket_factory.__aexit__(*exc_info)

    async def _wait_for(self, bucket: AsyncAbstractBucket, item: RateItem, delay: int) -> None:
        try:
            await asleep(delay / 1000)
        except BaseException:
            # Cancelled before its time: the reservation goes back to those still waiting.
            reserved = RateItem(item.name, item.timestamp + delay, item.weight)
            await ashielded(bucket.release, reserved)
            raise


def _refusal(item: RateItem, rate: Rate, delay: int, max_delay: int | None) -> Exception:
    """The exception for a refused item: full (no wait allowed, or never fits), or too long a wait."""
    if max_delay is None or delay == NEVER:
        return BucketFullException(item, rate)
    return LimiterDelayException(item, rate, delay, max_delay)


def _check_max_delay(max_delay: float | None) -> int | None:
    """``max_delay`` as every backend takes it: whole ms, infinity as "as long as it takes"."""
    if max_delay is None or type(max_delay) is int:
        if max_delay is not None and max_delay < 0:
            raise ValueError(f"max_delay must be >= 0 ms, got {max_delay}")
        return max_delay
    if isinstance(max_delay, bool) or not isinstance(max_delay, int | float):
        raise TypeError(f"max_delay must be a number of ms or None, got {max_delay!r}")
    if math.isnan(max_delay) or max_delay < 0:
        raise ValueError(f"max_delay must be >= 0 ms (or infinity: wait as long as it takes), got {max_delay}")
    return FOREVER if math.isinf(max_delay) else math.floor(max_delay)


def _factory_for(argument: Any, clock: Any) -> AsyncBucketFactory:
    if isinstance(argument, Rate):
        argument = [argument]
    if isinstance(argument, list):
        return AsyncSingleBucketFactory(AsyncInMemoryBucket(argument), clock)
    if AsyncBucketFactory in type(argument).__mro__:  # not isinstance: see try_acquire
        return argument  # type: ignore[no-any-return]
    if hasattr(argument, "put") and hasattr(argument, "rates"):
        return AsyncSingleBucketFactory(argument, clock)
    raise TypeError(f"a limiter takes a Rate, a list of rates, a bucket or a factory, got {argument!r}")
