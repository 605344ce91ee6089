"""Runtime twins: each async primitive beside its sync counterpart, reviewed side by side.

``scripts/run_unasync.py`` maps every async name here to its twin (``AsyncEvent`` -> ``Event``,
``asleep`` -> ``sleep``, ...). Anything that must differ between the variants lives here and in
``_drivers/`` (each store's async driver beside its blocking twin).
"""

from __future__ import annotations

import functools
import inspect
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, TypeVar, overload

import anyio
import anyio.to_thread

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine

    from anyio.abc import TaskGroup as _AnyioTaskGroup
    from typing_extensions import Self

T = TypeVar("T")


# -- sleeping ------------------------------------------------------------------------------


async def asleep(seconds: float) -> None:
    await anyio.sleep(seconds)


def sleep(seconds: float) -> None:
    time.sleep(seconds)


# -- events that background loops stop on ----------------------------------------------------


class AsyncEvent:
    """A flag to wait on with a timeout; usable before any event loop runs."""

    def __init__(self) -> None:
        self._flag = False
        self._event: anyio.Event | None = None  # made on first wait: it needs a running loop

    def set(self) -> None:
        self._flag = True
        if self._event is not None:
            self._event.set()

    def is_set(self) -> bool:
        return self._flag

    async def wait(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109 - twin of threading
        """Return ``True`` once set, ``False`` when ``timeout`` seconds pass first."""
        if not self._flag:
            if self._event is None:
                self._event = anyio.Event()
            with anyio.move_on_after(timeout):
                await self._event.wait()
        return self._flag


Event = threading.Event


# -- running things concurrently -------------------------------------------------------------


class AsyncTaskGroup:
    """Runs coroutine functions as tasks inside ``async with``.

    Tasks started before the group is entered wait for it: background loops of a limiter made
    at import time start when the application enters it.
    """

    def __init__(self) -> None:
        self._group: _AnyioTaskGroup | None = None
        self._pending: list[tuple[Callable[..., Coroutine[Any, Any, Any]], tuple[Any, ...]]] = []

    def start_soon(self, func: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None:
        if self._group is None:
            self._pending.append((func, args))
        else:
            self._group.start_soon(func, *args)

    async def join(self) -> None:
        """Nothing to do: tasks end with their loop and ``async with`` waits for them."""

    async def __aenter__(self) -> Self:
        group = anyio.create_task_group()
        await group.__aenter__()
        self._group = group
        pending, self._pending = self._pending, []
        for func, args in pending:
            group.start_soon(func, *args)
        return self

    async def __aexit__(self, *exc_info: object) -> bool | None:
        group, self._group = self._group, None
        assert group is not None
        return await group.__aexit__(*exc_info)  # type: ignore[arg-type]


class TaskGroup:
    """Runs functions in daemon threads, started at once; leaving ``with`` joins them.

    Daemon threads: a forgotten limiter must never keep the process from exiting.
    """

    def __init__(self) -> None:
        self._threads: list[threading.Thread] = []
        self._errors: list[BaseException] = []

    def start_soon(self, func: Callable[..., Any], *args: Any) -> None:
        self._threads = [thread for thread in self._threads if thread.is_alive()]
        name = f"pyrate_limiter:{getattr(func, '__name__', 'task')}"
        thread = threading.Thread(target=self._run, args=(func, args), name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def join(self) -> None:
        """Wait for every thread started here to return."""
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join()

    def _run(self, func: Callable[..., Any], args: tuple[Any, ...]) -> None:
        try:
            func(*args)
        except BaseException as error:
            self._errors.append(error)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> bool | None:
        self.join()
        if self._errors and exc_info[0] is None:
            raise self._errors[0]
        return None


async def arun_blocking(func: Callable[..., T], *args: Any) -> T:
    """Run a blocking driver call in a worker thread, for drivers with no async API on this loop."""
    return await anyio.to_thread.run_sync(func, *args)


if sys.version_info >= (3, 11):
    # A call made in C, with no frame of ours: sync buckets make one per acquire.
    from operator import call as run_blocking
else:

    def run_blocking(func: Callable[..., T], *args: Any) -> T:
        return func(*args)


async def ashielded(func: Callable[..., Awaitable[T]], *args: Any) -> T:
    """Run clean-up to its end even while the caller is being cancelled."""
    with anyio.CancelScope(shield=True):
        result = await func(*args)
    return result


def shielded(func: Callable[..., T], *args: Any) -> T:
    return func(*args)


# -- values that may or may not be awaitable ------------------------------------------------


# Types seen not to be awaitable: the check then costs one set lookup on the hot path.
_PLAIN_TYPES: set[type] = set()


@overload
async def aresolve(value: Awaitable[T]) -> T: ...
@overload
async def aresolve(value: T) -> T: ...
async def aresolve(value: Any) -> Any:
    """Await ``value`` if it is awaitable: user clocks and factories may be sync or async."""
    if type(value) in _PLAIN_TYPES:
        return value
    if inspect.isawaitable(value):
        return await value
    _PLAIN_TYPES.add(type(value))
    return value


@overload
def resolve(value: Awaitable[T]) -> T: ...
@overload
def resolve(value: T) -> T: ...
def resolve(value: Any) -> Any:
    """Return ``value``, refusing an awaitable: the sync API cannot wait for one."""
    if type(value) in _PLAIN_TYPES:
        return value
    if inspect.isawaitable(value):
        if inspect.iscoroutine(value):
            value.close()
        raise TypeError(
            "got an awaitable where the sync API needs a value: a clock, factory or bucket here is "
            "async, so use the Async* twin (AsyncLimiter, AsyncBucketFactory, ...)"
        )
    _PLAIN_TYPES.add(type(value))
    return value


def areader(clock: Any) -> Callable[[], Awaitable[Any]]:
    """``clock.now`` as a coroutine function, decided once: an async clock's is awaited, a sync one's called."""
    now = clock.now
    if inspect.iscoroutinefunction(now):
        return now  # type: ignore[no-any-return]

    async def read() -> Any:
        return now()

    return read


def reader(clock: Any) -> Callable[[], Any]:
    """``clock.now``, which the sync API calls: a reading that is no time is refused where it is read."""
    return clock.now  # type: ignore[no-any-return]


# -- guarding a user's bucket factory -------------------------------------------------------


class AsyncRoutingLock:
    """No lock: a factory's routing code cannot interleave with itself on one event loop."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc_info: object) -> None:
        return None


RoutingLock = threading.Lock
"""A thread lock around a factory's routing, so two threads never create one bucket twice."""


# -- decorators ----------------------------------------------------------------------------


def adecorate(
    acquire: Callable[[str, int], Awaitable[bool]], mapping: Callable[..., Any], func: Callable[..., Any]
) -> Callable[..., Any]:
    """Wrap ``func`` so each call is first admitted; the wrapper is a coroutine function.

    A refused call returns ``None`` without running ``func`` (or raises, as ``acquire`` does).
    """
    is_coroutine = inspect.iscoroutinefunction(func)

    @functools.wraps(func)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not await acquire(*acquire_args(mapping(*args, **kwargs))):
            return None
        result = func(*args, **kwargs)
        return await result if is_coroutine else result

    return wrapper


def decorate(
    acquire: Callable[[str, int], bool], mapping: Callable[..., Any], func: Callable[..., Any]
) -> Callable[..., Any]:
    """Wrap ``func`` so each call is first admitted; a coroutine function stays one.

    For a coroutine function the acquire runs in a worker thread, so a delay or a blocking
    backend never stalls the event loop.
    """
    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            name, weight = acquire_args(mapping(*args, **kwargs))
            if not await anyio.to_thread.run_sync(acquire, name, weight):
                return None
            return await func(*args, **kwargs)

        return async_wrapper

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not acquire(*acquire_args(mapping(*args, **kwargs))):
            return None
        return func(*args, **kwargs)

    return wrapper


def acquire_args(mapped: Any) -> tuple[str, int]:
    """Check what a decorator's mapping returned: ``name`` or ``(name, weight)``."""
    if isinstance(mapped, str):
        return mapped, 1
    if isinstance(mapped, tuple) and len(mapped) == 2 and isinstance(mapped[0], str):
        return mapped[0], mapped[1]
    raise TypeError(f"a decorator's mapping must return a str or a (str, int) tuple, got {mapped!r}")


# -- a lock held across awaits (the SQLite drivers: one connection's transactions) ----------

AsyncLock = anyio.Lock
Lock = threading.Lock
