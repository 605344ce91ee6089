"""v3 spellings that pick a variant at run time, kept in this one place.

v3 had one ``Limiter`` for both worlds: ``Limiter(async_bucket)`` followed by
``await limiter.try_acquire(...)``. Here the public ``Limiter`` is the sync twin unless what
it is given is async, in which case construction returns an ``AsyncLimiter``. Everything v3
spelled that the core does not (its extra options, ``try_acquire_async``, factories and buckets
that turn async at run time) is adapted here to the core's interfaces, never copied from it.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import threading
from typing import TYPE_CHECKING, Any, overload

import anyio
import anyio.to_thread

from ._adapters import AsyncFactory, as_async_bucket, awaited, has_async_methods, is_async, is_async_clock
from ._async import AsyncAbstractBucket, AsyncAbstractClock, AsyncBucketFactory, AsyncLimiter
from ._async.buckets.redis import AsyncRedisBucket
from ._concurrency import acquire_args
from ._drivers.redis import is_async_client
from ._rate import Rate, RateItem
from ._sync import AbstractBucket, AbstractClock, BucketFactory
from ._sync import Limiter as _SyncLimiter
from ._sync.buckets.redis import RedisBucket as _SyncRedisBucket
from ._sync.factory import SingleBucketFactory, as_ms
from ._sync.limiter import _LIMITER_DEFAULT
from ._v3 import BucketAsyncWrapper

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from typing_extensions import Self

    from ._typing import AsyncRedisClient, RedisClient


class _EitherLimiter(type):
    """``isinstance(x, Limiter)`` holds for the ``AsyncLimiter`` that ``Limiter(...)`` may return."""

    def __instancecheck__(cls, instance: object) -> bool:
        return super().__instancecheck__(instance) or (cls is Limiter and isinstance(instance, AsyncLimiter))

    def __subclasscheck__(cls, subclass: type) -> bool:
        return super().__subclasscheck__(subclass) or (cls is Limiter and issubclass(subclass, AsyncLimiter))


class _V3Options:
    """v3's two extra options: accepted, kept as attributes, and of no effect.

    v3 slept ``delay + buffer_ms`` and re-tried its put, which could miss, so it offered to retry
    until ``max_delay``; here the item's place is reserved when it is decided, at exactly the time
    it fits, so there is no re-acquire to retry and no buffer to add.
    """

    def __init__(
        self,
        argument: Any,
        clock: Any = None,
        raise_when_fail: bool = True,
        max_delay: float | None = None,
        retry_until_max_delay: bool = False,
        buffer_ms: int = 50,
        **options: Any,
    ) -> None:
        super().__init__(argument, clock, raise_when_fail, max_delay, **options)  # type: ignore[call-arg]
        self.retry_until_max_delay = retry_until_max_delay
        self.buffer_ms = buffer_ms


class _V3AsyncLimiter(_V3Options, AsyncLimiter):
    """The ``AsyncLimiter`` that ``Limiter(...)`` returns for async arguments, with v3's spellings."""

    # v3's name for try_acquire on a limiter that is async already: the same function, no extra call.
    try_acquire_async = AsyncLimiter.try_acquire


class Limiter(_V3Options, _SyncLimiter, metaclass=_EitherLimiter):
    """The sync limiter; given an async bucket or factory, an ``AsyncLimiter`` instead."""

    _twin: AsyncLimiter | None = None  # decides the async acquires: see _acquire_routed

    # Construction may yield the async twin, as v3's single Limiter did.
    @overload
    def __new__(  # type: ignore[misc]
        cls, argument: AsyncAbstractBucket | AsyncBucketFactory, *args: Any, **kwargs: Any
    ) -> _V3AsyncLimiter: ...
    @overload
    def __new__(
        cls, argument: Rate | list[Rate] | AbstractBucket | BucketFactory, *args: Any, **kwargs: Any
    ) -> Self: ...
    def __new__(cls, argument: Any = None, *args: Any, **kwargs: Any) -> Any:
        if has_async_methods(argument):
            return _V3AsyncLimiter(as_async_bucket(argument), *args, **kwargs)
        if isinstance(argument, AsyncAbstractBucket | AsyncBucketFactory):
            return _V3AsyncLimiter(argument, *args, **kwargs)
        if is_async(argument):
            return _V3AsyncLimiter(AsyncFactory(argument), *args, **kwargs)
        clock = args[0] if args else kwargs.get("clock")
        if isinstance(argument, Rate | list | AbstractBucket) and is_async_clock(clock):
            # v3: an async clock (TimeAsyncClock) made acquires awaitable over any bucket.
            if isinstance(argument, AbstractBucket):
                argument = BucketAsyncWrapper(argument)
            return _V3AsyncLimiter(argument, *args, **kwargs)
        if cls is Limiter and (_user_factory(argument) or _user_clock(argument, clock)):
            # User code decides at each call whether it is async: follow it there.
            return super().__new__(_FollowingLimiter)
        return super().__new__(cls)

    async def try_acquire_async(self, name: str, weight: int = 1, max_delay: Any = _LIMITER_DEFAULT) -> bool:
        """``try_acquire`` for code on an event loop (asyncio or trio), which it never blocks.

        Routing runs in a worker thread (a factory may do I/O; stamping with one of our clocks
        does not, and runs inline), then the async twin decides over the bucket seen through
        ``BucketAsyncWrapper``: a wait is slept on the loop, and a waiter cancelled before its
        time gives its reservation back. The generated base class has a sync method of this
        name; v3 code awaits this one.
        """
        factory = self.bucket_factory
        try:
            if isinstance(factory, SingleBucketFactory) and factory._read_ns is not None:
                item, bucket = self._route(name, weight)
            else:
                item, bucket = await anyio.to_thread.run_sync(self._route, name, weight)
        except _Deferred as deferred:
            return await self._acquire_routed(*await deferred.routed(factory), max_delay)
        return await self._acquire_routed(item, as_async_bucket(bucket), max_delay)

    async def _acquire_routed(self, item: RateItem, bucket: AsyncAbstractBucket, max_delay: Any) -> bool:
        """The rest of an acquire whose item and bucket are known, decided by the async twin."""
        twin = self._twin
        if twin is None:
            twin = self._twin = AsyncLimiter([Rate(1, 1)])
            twin._route = _routed
        # The options as they are now: v3 code sets them on the limiter after making it.
        twin.raise_when_fail = self.raise_when_fail
        if max_delay is _LIMITER_DEFAULT:
            max_delay = self.max_delay
        token = _ROUTED.set((item, bucket))
        try:
            return await twin.try_acquire(item.name, item.weight, max_delay)
        finally:
            _ROUTED.reset(token)


def _v3_only(method: Callable[..., Any], what: str) -> Callable[..., Any]:
    """``method`` of a ``_FollowingLimiter``, raising ``_not_v3`` where routing turned out async."""

    @functools.wraps(method)
    def call(self: Limiter, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except _Deferred as deferred:
            raise _not_v3(deferred, what) from None

    return call


class _FollowingLimiter(Limiter):
    """A ``Limiter`` over a user's factory or clock: sync while every call is, async from where one is not.

    As in v3, a ``wrap_item``, ``get``, clock or bucket that hands back an awaitable makes that
    ``try_acquire`` return an awaitable; the rest is decided by the async twin, unchanged.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        factory = self.bucket_factory
        if isinstance(factory, SingleBucketFactory):  # a bucket and a user's clock
            self._route = self._route_stamped
        else:
            self._route = self._route_through_factory
            self._wrap_item, self._get = factory.wrap_item, factory.get  # bound once: on every acquire's path
        self._routing = threading.Lock()  # two threads never make one name's bucket twice

    def try_acquire(self, name: str, weight: int = 1, max_delay: Any = _LIMITER_DEFAULT) -> Any:
        try:
            return super().try_acquire(name, weight, max_delay)
        except _Deferred as deferred:
            return self._acquire_deferred(deferred, max_delay)

    def as_decorator(self) -> Callable[[Callable[..., Any]], Callable[[Callable[..., Any]], Callable[..., Any]]]:
        def with_mapping(mapping: Callable[..., Any]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
            def wrap(func: Callable[..., Any]) -> Callable[..., Any]:
                return _decorate_following(self.try_acquire, mapping, func)

            return wrap

        return with_mapping

    # The calls v3 never had cannot follow routing that turned out async: they say so.
    _place = _v3_only(Limiter._place, "reserve() and acquire()")
    pause = _v3_only(Limiter.pause, "pause()")
    pause_until = _v3_only(Limiter.pause_until, "pause_until()")
    paused_until = _v3_only(Limiter.paused_until, "paused_until()")
    state = _v3_only(Limiter.state, "state()")

    def _route_stamped(self, name: str, weight: int) -> tuple[RateItem, AbstractBucket]:
        factory: Any = self.bucket_factory
        bucket, now = factory.bucket, factory.clock.now()
        if inspect.isawaitable(now):
            raise _Deferred(_stamped(name, weight, now, factory.clock), bucket)
        return _checked(RateItem(name, as_ms(now, factory.clock), weight), bucket)

    def _route_through_factory(self, name: str, weight: int) -> tuple[RateItem, AbstractBucket]:
        routing = self._routing
        routing.acquire()  # not `with`: half the cost, on every acquire's path
        try:
            item = self._wrap_item(name, weight)
            if type(item) is not RateItem and inspect.isawaitable(item):
                raise _Deferred(item, None)
            bucket = self._get(item)
        finally:
            routing.release()
        if type(bucket) in _SYNC_BUCKETS:
            return item, bucket
        return _checked(item, bucket)

    async def _acquire_deferred(self, deferred: _Deferred, max_delay: Any) -> bool:
        return await self._acquire_routed(*await deferred.routed(self.bucket_factory), max_delay)


class _Deferred(Exception):
    """Routing met an awaitable: the rest of this acquire is async."""

    def __init__(self, item: Any, bucket: Any) -> None:
        self.item, self.bucket = item, bucket

    async def routed(self, factory: BucketFactory) -> tuple[RateItem, AsyncAbstractBucket]:
        """The item and its bucket, each awaited where routing left an awaitable."""
        item: RateItem = await awaited(self.item)
        bucket = self.bucket if self.bucket is not None else factory.get(item)
        return item, as_async_bucket(await awaited(bucket))


_ROUTED: contextvars.ContextVar[tuple[RateItem, AsyncAbstractBucket]] = contextvars.ContextVar("pyrate_limiter_routed")


# Bucket types seen to be plainly sync: routing then checks them with one set lookup.
_SYNC_BUCKETS: set[type] = set()


def _not_v3(deferred: _Deferred, what: str) -> TypeError:
    """The error for a new API met by routing that turned out async: only v3's calls follow it."""
    if inspect.iscoroutine(deferred.item):
        deferred.item.close()
    return TypeError(
        f"{what} of a Limiter whose factory, clock or bucket turned out async are not v3 spellings: "
        "use AsyncLimiter over that factory"
    )


def _checked(item: RateItem, bucket: Any) -> tuple[RateItem, AbstractBucket]:
    """``(item, bucket)``, or ``_Deferred`` when the bucket is async (or not a bucket yet)."""
    kind = type(bucket)
    if kind not in _SYNC_BUCKETS:
        if inspect.isawaitable(bucket) or has_async_methods(bucket) or AsyncAbstractBucket in kind.__mro__:
            raise _Deferred(item, bucket)
        _SYNC_BUCKETS.add(kind)
    return item, bucket


async def _stamped(name: str, weight: int, now: Awaitable[int], clock: Any) -> RateItem:
    return RateItem(name, as_ms(await now, clock), weight)


async def _routed(name: str, weight: int) -> tuple[RateItem, AsyncAbstractBucket]:
    """The async twin's routing for a deferred acquire: what the sync routing already found."""
    return _ROUTED.get()


def _decorate_following(
    acquire: Callable[..., Any], mapping: Callable[..., Any], func: Callable[..., Any]
) -> Callable[..., Any]:
    """``decorate`` for a limiter whose acquire may turn async: await it where it does."""
    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            name, weight = acquire_args(mapping(*args, **kwargs))
            # A worker thread: a sync bucket may block; an async one hands back its awaitable here.
            (admitted,) = await anyio.to_thread.run_sync(_boxed, acquire, name, weight)
            if not await awaited(admitted):
                return None
            return await func(*args, **kwargs)

        return async_wrapper

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        admitted = acquire(*acquire_args(mapping(*args, **kwargs)))
        if inspect.isawaitable(admitted):
            return _then(admitted, func, args, kwargs)
        return func(*args, **kwargs) if admitted else None

    return wrapper


def _boxed(acquire: Callable[..., Any], name: str, weight: int) -> list[Any]:
    # Boxed: trio refuses a worker thread's function whose result is a coroutine.
    return [acquire(name, weight)]


async def _then(admitted: Awaitable[bool], func: Callable[..., Any], args: Any, kwargs: Any) -> Any:
    return func(*args, **kwargs) if await admitted else None


def _user_factory(argument: Any) -> bool:
    # A factory with a route() of its own routes as it says, sync: there is nothing to follow.
    return (
        isinstance(argument, BucketFactory)
        and not isinstance(argument, SingleBucketFactory)
        and type(argument).route is BucketFactory.route
    )


def _user_clock(argument: Any, clock: Any) -> bool:
    # Ours are known to be sync here (an async one already made the limiter async); a user's may not be.
    ours = type(clock).__module__.startswith("pyrate_limiter.")
    return clock is not None and not ours and not isinstance(argument, BucketFactory)


class RedisBucket(_SyncRedisBucket):
    """The sync Redis bucket; ``await RedisBucket.init(...)`` with an async client makes the async twin.

    As in v3, where one ``RedisBucket.init`` served ``redis.Redis`` and ``redis.asyncio.Redis``.
    """

    def __init__(self, rates: list[Rate], redis: RedisClient, bucket_key: str, *, server_time: bool = False) -> None:
        if is_async_client(redis):
            raise TypeError(f"{redis!r} is an async client: use `await RedisBucket.init(...)` or AsyncRedisBucket")
        super().__init__(rates, redis, bucket_key, server_time=server_time)

    # May return the async twin's awaitable, as v3 did.
    @overload
    @classmethod
    def init(
        cls, rates: list[Rate], redis: AsyncRedisClient, bucket_key: str, *, server_time: bool = False
    ) -> Awaitable[AsyncRedisBucket]: ...
    @overload
    @classmethod
    def init(cls, rates: list[Rate], redis: RedisClient, bucket_key: str, *, server_time: bool = False) -> Self: ...
    @classmethod
    def init(cls, rates: list[Rate], redis: Any, bucket_key: str, *, server_time: bool = False) -> Any:
        if is_async_client(redis):
            return AsyncRedisBucket.init(rates, redis, bucket_key, server_time=server_time)
        return super().init(rates, redis, bucket_key, server_time=server_time)


# v3 had one class per concept for both worlds, and its users check for it: every bucket is an
# AbstractBucket, every factory a BucketFactory, every clock an AbstractClock, and what
# ``await RedisBucket.init(...)`` returns a RedisBucket, whichever variant they are.
AbstractBucket.register(AsyncAbstractBucket)  # type: ignore[type-abstract]  # ABCs register ABCs
BucketFactory.register(AsyncBucketFactory)  # type: ignore[type-abstract]
AbstractClock.register(AsyncAbstractClock)  # type: ignore[type-abstract]
RedisBucket.register(AsyncRedisBucket)
