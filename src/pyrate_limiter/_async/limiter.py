"""The limiter: admit, refuse or delay each acquire, as a call, a decorator or a context."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from .. import _hooks as report
from .._concurrency import adecorate, ashielded, asleep
from .._errors import BackendError, BucketFullException, refusal
from .._rate import VALID_NAMES, Rate, RateItem, check_name, check_pause, check_weight, recorded_at
from .._state import LimitState, limit_state
from .._window import FOREVER, NEVER
from .buckets.base import AsyncAbstractBucket
from .buckets.in_memory import AsyncInMemoryBucket
from .buckets.keyed import AsyncKeyedBucket
from .clocks import AsyncTimeClock
from .factory import AsyncBucketFactory, AsyncSingleBucketFactory
from .per_key import AsyncPerKeyFactory
from .reservation import AsyncAdmission, AsyncReservation

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from typing_extensions import Self

    from .._hooks import LimiterHooks, OnBackendError
    from .._rate import Verdict
    from .clocks import AsyncAbstractClock
    from .per_key import BucketFor

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
    :param on_backend_error: when the backend cannot decide (``BackendError``): ``"raise"`` it,
        ``"allow"`` the item (fail open; nothing is recorded, then or later) or ``"deny"`` it (fail
        closed: refused as by a full bucket). A WARNING is logged once an outage, and once it ends.
    :param hooks: ``LimiterHooks`` told of each admission, wait, refusal and backend error.
    """

    def __init__(
        self,
        argument: Rate | list[Rate] | AsyncAbstractBucket | AsyncBucketFactory,
        clock: AsyncAbstractClock | Any = None,
        raise_when_fail: bool = True,
        max_delay: float | None = None,
        *,
        on_backend_error: OnBackendError = "raise",
        hooks: Iterable[LimiterHooks] = (),
    ) -> None:
        self.max_delay = _check_max_delay(max_delay)
        self.raise_when_fail = raise_when_fail
        self.on_backend_error = report.check_policy(on_backend_error)
        self._hooks = report.check_hooks(hooks)
        self._outage = False  # the backend's last answer was a failure
        self._watching = bool(self._hooks)  # an admission at once has someone to tell: hooks, or an outage's end
        if clock is not None and not callable(getattr(clock, "now", None)):
            raise TypeError(f"clock must have a now() returning ms, got {clock!r}")
        self.bucket_factory = _factory_for(argument, clock if clock is not None else AsyncTimeClock())
        self._route = self.bucket_factory.route

    @classmethod
    def per_key(
        cls,
        rates: list[Rate] | Callable[[str], list[Rate]],
        bucket_for: BucketFor | None = None,
        *,
        clock: AsyncAbstractClock | Any = None,
        **options: Any,
    ) -> Self:
        """A limiter that gives every name its own limit: ``AsyncLimiter.per_key([Rate(10, 1000)])``.

        :param rates: the rates of every name, or a function from a name to its rates (tiers).
        :param bucket_for: ``bucket_for(name, rates)`` makes a new name's bucket in a shared
            backend (``lambda name, rates: AsyncRedisBucket(rates, client, name)``); its objects
            are forgotten once idle, the backend expiring their state. Without it names live in
            one ``AsyncKeyedBucket`` in memory, each log dropped by the leak once empty.
        :param options: the limiter's other arguments (``max_delay``, ``raise_when_fail``, ...).
        """
        clock = clock if clock is not None else AsyncTimeClock()
        if bucket_for is None:
            return cls(AsyncKeyedBucket(rates), clock, **options)
        return cls(AsyncPerKeyFactory(rates, bucket_for, clock), **options)

    async def try_acquire(self, name: str, weight: int = 1, max_delay: float | None = _LIMITER_DEFAULT) -> bool:
        """Admit one item of ``weight`` under ``name``, waiting up to ``max_delay`` ms if allowed.

        :param max_delay: overrides the limiter's ``max_delay`` for this call.
        :return: ``True`` once admitted; ``False`` when refused and ``raise_when_fail`` is off.
        :raises BucketFullException: refused, with no wait allowed (or the weight exceeds a limit).
        :raises LimiterDelayException: the wait needed is longer than ``max_delay``.
        """
        try:
            known = name in VALID_NAMES  # one set lookup for a name seen before
        except TypeError:  # unhashable: check_name says what is wrong with it
            known = False
        if not known:
            check_name(name)
        if type(weight) is not int or weight < 0:
            check_weight(weight)
        if max_delay is _LIMITER_DEFAULT:
            max_delay = self.max_delay
        elif max_delay is not None:
            max_delay = _check_max_delay(max_delay)
        item, bucket = await self._route(name, weight)
        try:
            verdict = await bucket.reserve(item, max_delay)
        except TypeError as error:
            # The MRO, not isinstance: the compat layer registers each variant's buckets with the other's.
            if AsyncAbstractBucket in type(bucket).__mro__:
                raise
            raise TypeError(f"{bucket!r} is a bucket of the other variant than {self!r}") from error
        except BackendError as error:
            return self._failed(item, bucket, error, self.raise_when_fail)
        rate = verdict[1]
        if rate is None:
            if verdict[0]:
                return await self._wait_for(bucket, item, verdict, max_delay, self.raise_when_fail) is not None
            if self._watching:
                self._admitted(item, 0)
            return True
        self._refused(item, rate, verdict[0])
        if not self.raise_when_fail:
            return False
        raise refusal(item, verdict, max_delay)

    async def pause(self, name: str, ms: float) -> int:
        """Admit nothing under ``name`` for ``ms`` from now, for every caller sharing its bucket's
        backend (other processes and hosts too); a longer pause already set stays.

        Callers already waiting for a place before its end move behind it, within their
        ``max_delay``. The HTTP helpers call this on a 429 or 503 with ``Retry-After``.

        :return: when the pause in force ends (a timestamp in ms on the limiter's clock).
        """
        if isinstance(ms, bool) or not isinstance(ms, int | float):
            raise TypeError(f"a pause lasts a number of ms, got {ms!r}")
        if not 0 <= ms < math.inf:  # NaN too
            raise ValueError(f"a pause lasts a finite number of ms >= 0, got {ms!r}")
        check_name(name)
        item, bucket = await self._route(name, 0)
        return await self._pause(bucket, name, item.timestamp + math.ceil(ms))

    async def pause_until(self, name: str, stamp: int) -> int:
        """``pause`` up to ``stamp`` (ms on the limiter's clock, as ``Reservation.at``); returns the end in force."""
        check_pause(name, stamp)
        _, bucket = await self._route(name, 0)
        return await self._pause(bucket, name, stamp)

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

    async def state(self, name: str, weight: int = 1) -> LimitState:
        """Where ``name`` stands, spending and reserving nothing: when an item of ``weight`` would
        fit (``retry_after_ms``: 0 now, ``None`` never) and each rate's ``used``, ``remaining`` and
        ``reset_ms``, read in one atomic step; ``try_acquire`` at that instant decides the same."""
        try:
            known = name in VALID_NAMES  # one set lookup for a name seen before, as in try_acquire
        except TypeError:
            known = False
        if not known:
            check_name(name)
        if type(weight) is not int or weight < 0:
            check_weight(weight)
        item, bucket = await self._route(name, weight)
        wait, usage = await bucket.state(item)
        return limit_state(wait, usage)

    def acquire(self, name: str, weight: int = 1, max_delay: float | None = _LIMITER_DEFAULT) -> AsyncAdmission:
        """``async with limiter.acquire(name, weight):`` runs the block once admitted (see ``AsyncAdmission``)."""
        return AsyncAdmission(self, name, weight, max_delay)

    async def _reserve(self, name: str, weight: int, max_delay: Any, *, raising: bool) -> AsyncReservation | None:
        placed = await self._place(name, weight, max_delay, raising)
        if placed is None:
            return None
        item, bucket, verdict, _, decided = placed
        if decided and self._watching:
            self._admitted(item, verdict[0])
        return AsyncReservation(bucket, item, verdict)

    async def _admit(self, name: str, weight: int, max_delay: Any) -> AsyncReservation:
        """What ``acquire`` enters with: ``try_acquire``'s wait, raising on refusal, and the place it got."""
        placed = await self._place(name, weight, max_delay, True)
        assert placed is not None  # raising: a refusal raised
        item, bucket, verdict, max_delay, decided = placed
        if verdict[0]:
            moved = await self._wait_for(bucket, item, verdict, max_delay, True)  # a pause may move the place
            assert moved is not None  # raising: a refusal raised
            bucket, item, verdict = moved
        elif decided and self._watching:
            self._admitted(item, 0)
        return AsyncReservation(bucket, item, verdict)

    async def _place(
        self, name: str, weight: int, max_delay: Any, raising: bool
    ) -> tuple[RateItem, AsyncAbstractBucket, Verdict, int | None, bool] | None:
        """Reserve a place: ``(item, bucket, verdict, max_delay, decided)``, ``decided`` false when
        admitted by ``on_backend_error`` alone; ``None`` when refused and not ``raising``."""
        # try_acquire's first steps, written out there too: its hot path spends no call on sharing them.
        check_name(name)
        if type(weight) is not int or weight < 0:
            check_weight(weight)
        max_delay = self.max_delay if max_delay is _LIMITER_DEFAULT else _check_max_delay(max_delay)
        item, bucket = await self._route(name, weight)
        try:
            verdict = await bucket.reserve(item, max_delay)
        except BackendError as error:
            # Admitted by the policy: a place of no delay, recorded nowhere, so nothing to give back.
            return (item, bucket, (0, None), max_delay, False) if self._failed(item, bucket, error, raising) else None
        rate = verdict[1]
        if rate is None:
            return item, bucket, verdict, max_delay, True
        self._refused(item, rate, verdict[0])
        if not raising:
            return None
        raise refusal(item, verdict, max_delay)

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

    async def paused_until(self, name: str) -> int:
        """When the pause on ``name`` ends (ms on the limiter's clock); 0, or a time past, when none holds."""
        check_name(name)
        _, bucket = await self._route(name, 0)
        return await bucket.paused_until(name)

    async def _pause(self, bucket: AsyncAbstractBucket, name: str, until: int) -> int:
        end = await bucket.pause_until(name, until)
        self.bucket_factory._keep_until(name, end)
        return end

    async def _wait_for(
        self, bucket: AsyncAbstractBucket, item: RateItem, verdict: Verdict, max_delay: int | None, raising: bool
    ) -> tuple[AsyncAbstractBucket, RateItem, Verdict] | None:
        """Sleep until the place ``verdict`` reserved for ``item``, then admit the item.

        A pause set meanwhile whose end is past the place moves the item behind it: the place is
        given back and a new one taken, if that is within what is left of ``max_delay``.

        :return: where the item was admitted (``bucket``, ``item``, ``verdict`` of its last
            place); ``None`` when refused and not ``raising``.
        """
        started = item.timestamp
        while True:
            delay = verdict[0]
            reserved = RateItem(item.name, recorded_at(item, verdict), item.weight)
            report.waiting(self._hooks, item, delay)
            try:
                await asleep(delay / 1000)
                paused = await self._paused_past(bucket, reserved)
            except BaseException:
                # Cancelled before its time: the reservation goes back to those still waiting.
                await ashielded(bucket.release, reserved)
                raise
            if not paused:
                if self._watching:
                    self._admitted(item, item.timestamp + delay - started)
                return bucket, item, verdict
            item, bucket = await self._route(item.name, item.weight)
            left = None if max_delay is None else max(0, max_delay - (item.timestamp - started))
            try:
                await bucket.release(reserved)
                verdict = await bucket.reserve(item, left)
            except BackendError as error:
                # Admitted by the policy: a place of no delay, recorded nowhere.
                return (bucket, item, (0, None)) if self._failed(item, bucket, error, raising) else None
            rate = verdict[1]
            if rate is not None:
                self._refused(item, rate, verdict[0])
                if not raising:
                    return None
                raise refusal(item, verdict, left)

    @staticmethod
    async def _paused_past(bucket: AsyncAbstractBucket, reserved: RateItem) -> bool:
        """Whether a pause set while ``reserved`` waited ends after its place (unknown: no)."""
        try:
            return await bucket.paused_until(reserved.name) > max(0, reserved.timestamp)  # 0: none
        except BackendError:
            return False  # the place was granted; only a pause could take it back, and none is known

    # -- what the limiter tells (see _hooks): off the path of an admission made at once ---------

    def _admitted(self, item: RateItem, delay: int) -> None:
        if self._outage:
            self._back()
        report.admitted(self._hooks, item, delay)

    def _refused(self, item: RateItem, rate: Rate, delay: int) -> None:
        if self._outage:
            self._back()
        report.refused(self._hooks, item, rate, None if delay == NEVER else delay)

    def _back(self) -> None:
        self._outage = False
        self._watching = bool(self._hooks)
        report.backend_back()

    def _failed(self, item: RateItem, bucket: AsyncAbstractBucket, error: BackendError, raising: bool) -> bool:
        """What ``on_backend_error`` makes of a failed decision: raise, admit (``True``) or refuse."""
        policy = self.on_backend_error
        first, self._outage, self._watching = not self._outage, True, True
        report.backend_failed(self._hooks, item, error, policy, first)
        if policy == "raise":
            raise error
        if policy == "allow":
            return True
        if raising:
            raise BucketFullException(item, bucket.rates[0]) from error
        return False


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
