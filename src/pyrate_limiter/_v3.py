"""Names v3.9 exported that our design does not need but v3 code imports: small, and kept apart.

Each behaves as v3's did unless the spec or correctness says otherwise (README, "Migrating").
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import inspect
import random
import sqlite3
import string
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread

from ._async.buckets.base import AsyncAbstractBucket
from ._async.clocks import AsyncTimeClock
from ._drivers.redis import SCRIPT as REDIS_SCRIPT
from ._sync.buckets.in_memory import InMemoryBucket

if TYPE_CHECKING:
    from ._rate import Rate, RateItem, Verdict
    from ._sync.buckets.base import AbstractBucket

ItemMapping = Callable[..., tuple[str, int]]
"""A decorator's mapping: the call's arguments to ``(name, weight)``."""

DecoratorWrapper = Callable[[Callable[..., Any]], Callable[..., Any]]
"""What ``limiter.as_decorator()(mapping)`` returns."""

TimeAsyncClock = AsyncTimeClock
"""v3's name for the async wall clock. With it, ``Limiter(...)`` makes the async limiter."""


def id_generator(size: int = 6, chars: str = string.ascii_uppercase + string.digits + string.ascii_lowercase) -> str:
    """A random name of ``size`` characters from ``chars`` (for tables and keys in tests)."""
    return "".join(random.choices(chars, k=size))


def binary_search(items: list[RateItem], value: int) -> int:
    """Index of the first of ``items`` (oldest first) stamped at or after ``value``; -1 if none is.

    ``0`` for an empty list, as in v3.
    """
    if not items:
        return 0
    if value > items[-1].timestamp:
        return -1
    return bisect.bisect_left(items, value, key=lambda item: item.timestamp)


@contextmanager
def combined_lock(locks: Iterable[Any], timeout_sec: float | None = None) -> Iterator[None]:
    """Hold every lock of ``locks``, taken in order and released in reverse.

    :raises TimeoutError: a lock was not free within ``timeout_sec`` (those taken are released).
    """
    acquired: list[Any] = []
    try:
        for lock in locks:
            if not (lock.acquire() if timeout_sec is None else lock.acquire(timeout=timeout_sec)):
                raise TimeoutError(f"lock {lock!r} not acquired within {timeout_sec} s")
            acquired.append(lock)
        yield
    finally:
        for lock in reversed(acquired):
            lock.release()


def dedicated_sqlite_clock_connection() -> sqlite3.Connection:
    """A connection for ``SQLiteClock`` alone, to a file in the temp dir (v3's default clock database)."""
    path = Path(tempfile.gettempdir()) / "pyrate_limiter_clock_only.sqlite"
    return sqlite3.connect(path, check_same_thread=False, isolation_level=None)


class BucketAsyncWrapper(AsyncAbstractBucket):
    """A sync bucket used through the async API: ``AsyncLimiter(BucketAsyncWrapper(bucket))``.

    Calls on an in-memory bucket run inline (they never block); any other bucket's calls run in
    a worker thread, so its I/O never stalls the event loop. Reservations stay exact: ``reserve``
    and ``release`` go to the wrapped bucket's own. An async bucket is passed through.
    """

    def __init__(self, bucket: AbstractBucket | AsyncAbstractBucket) -> None:
        if not hasattr(bucket, "put") or not hasattr(bucket, "rates"):
            raise TypeError(f"BucketAsyncWrapper wraps a bucket, got {bucket!r}")
        self.bucket = bucket
        self._inline = isinstance(bucket, InMemoryBucket | AsyncAbstractBucket)
        if type(bucket) is InMemoryBucket:
            # Ours, never blocking, never awaitable: its decision is called straight, one
            # coroutine deep like AsyncInMemoryBucket's, on the path of every acquire.
            decide = bucket._log.reserve

            async def reserve(item: RateItem, max_delay: int | None) -> Verdict:
                return decide(item, max_delay)

            self.reserve = reserve  # type: ignore[method-assign]

    @property
    def rates(self) -> list[Rate]:
        return self.bucket.rates

    @rates.setter
    def rates(self, rates: list[Rate]) -> None:
        self.bucket.rates = rates

    @property
    def failing_rate(self) -> Rate | None:
        return self.bucket.failing_rate

    @failing_rate.setter
    def failing_rate(self, rate: Rate | None) -> None:
        self.bucket.failing_rate = rate

    async def put(self, item: RateItem) -> bool:
        return bool(await self._call(self.bucket.put, item))

    async def reserve(self, item: RateItem, max_delay: int | None) -> Verdict:
        result: Verdict = await self._call(self.bucket.reserve, item, max_delay)
        return result

    async def release(self, item: RateItem) -> None:
        await self._call(self.bucket.release, item)

    async def waiting(self, item: RateItem) -> int:
        return int(await self._call(self.bucket.waiting, item))

    async def leak(self, current_timestamp: int) -> int:
        return int(await self._call(self.bucket.leak, current_timestamp))

    async def flush(self) -> None:
        await self._call(self.bucket.flush)

    async def count(self) -> int:
        return int(await self._call(self.bucket.count))

    async def peek(self, index: int) -> RateItem | None:
        found: RateItem | None = await self._call(self.bucket.peek, index)
        return found

    async def aclose(self) -> None:
        """Close the wrapped bucket (what it opened itself: see its ``close``)."""
        close = getattr(self.bucket, "aclose", None) or getattr(self.bucket, "close", None)
        if close is not None:
            await self._call(close)

    async def _call(self, method: Callable[..., Any], *args: Any) -> Any:
        if isinstance(self.bucket, AsyncAbstractBucket):
            return await method(*args)
        result = method(*args) if self._inline else await anyio.to_thread.run_sync(method, *args)
        # A v3 bucket may be sync in name and async in fact: v3's wrapper awaited it, so do we.
        while hasattr(result, "__await__"):
            result = await result
        return result


class Leaker(threading.Thread):
    """v3's leak scheduler, for code that drove one itself: our factories leak on their own.

    ``register(bucket, clock)`` then ``start()`` leaks sync buckets every ``leak_interval`` ms in
    this daemon thread; ``leak_async()``, called on a running asyncio loop, leaks async ones in
    a task. Leaking only frees memory: every decision already trims what it passes over.
    """

    def __init__(self, leak_interval: int = 10_000) -> None:
        super().__init__(name="pyrate_limiter:Leaker", daemon=True)
        self.leak_interval = leak_interval
        self.sync_buckets: dict[int, Any] = {}
        self.async_buckets: dict[int, Any] = {}
        self.clocks: dict[int, Any] = {}
        self.aio_leak_task: asyncio.Task[None] | None = None

    def register(self, bucket: AbstractBucket | AsyncAbstractBucket, clock: Any) -> None:
        """Leak ``bucket`` at the times ``clock`` tells."""
        is_async = isinstance(bucket, AsyncAbstractBucket) or inspect.iscoroutinefunction(type(bucket).leak)
        (self.async_buckets if is_async else self.sync_buckets)[id(bucket)] = bucket
        self.clocks[id(bucket)] = clock

    def deregister(self, bucket_id: int) -> bool:
        """Stop leaking the bucket of this ``id()``; return whether it was registered."""
        self.clocks.pop(bucket_id, None)
        found = self.sync_buckets.pop(bucket_id, None) or self.async_buckets.pop(bucket_id, None)
        return found is not None

    def start(self) -> None:
        """Start the thread, once, if a sync bucket is registered."""
        if self.sync_buckets and not self.is_alive() and self.ident is None:
            super().start()

    def run(self) -> None:
        while self.sync_buckets:
            for bucket_id, bucket in list(self.sync_buckets.items()):
                with contextlib.suppress(Exception):  # housekeeping outlives a backend blip
                    bucket.leak(int(self.clocks[bucket_id].now()))
            time.sleep(self.leak_interval / 1000)

    def leak_async(self) -> None:
        """On a running asyncio loop: leak the async buckets in a task, until none is left."""
        if self.async_buckets and self.aio_leak_task is None:
            self.aio_leak_task = asyncio.get_running_loop().create_task(self._leak_async())

    async def _leak_async(self) -> None:
        while self.async_buckets:
            for bucket_id, bucket in list(self.async_buckets.items()):
                with contextlib.suppress(Exception):
                    now = self.clocks[bucket_id].now()
                    await bucket.leak(int(await now if inspect.isawaitable(now) else now))
            await asyncio.sleep(self.leak_interval / 1000)
        self.aio_leak_task = None


class LuaScript:
    """v3's holder of the Redis bucket's Lua text. Ours is one script for every operation."""

    PUT_ITEM = REDIS_SCRIPT


class SQLiteQueries:
    """SQL text for our SQLite bucket table, v3's attribute names; ``.format(table=name)`` first.

    For inspecting and cleaning up in tests and scripts. The bucket itself never uses these, and
    v3's write statements (``PUT_ITEM``, ``LEAK``) are absent: a row written by hand would break
    the running totals a decision relies on. Format in only trusted names.
    """

    CREATE_BUCKET_TABLE = (
        'CREATE TABLE IF NOT EXISTS "{table}" '
        "(cum INTEGER PRIMARY KEY, ts INTEGER NOT NULL, weight INTEGER NOT NULL, name TEXT NOT NULL)"
    )
    FLUSH = 'DELETE FROM "{table}"'
    DROP_TABLE = 'DROP TABLE IF EXISTS "{table}"'
    DROP_INDEX = 'DROP INDEX IF EXISTS "{index}"'
    COUNT_ALL = 'SELECT coalesce(sum(weight), 0) FROM "{table}"'
    GET_ALL_ITEM = 'SELECT name, ts AS item_timestamp, weight FROM "{table}" WHERE weight > 0 ORDER BY cum ASC'
    GET_FIRST_ITEM = 'SELECT name, ts AS item_timestamp FROM "{table}" WHERE weight > 0 ORDER BY cum ASC'
    GET_LAG = (
        "SELECT CAST(round((julianday('now') - 2440587.5) * 86400000) AS INTEGER) - "
        '(SELECT ts FROM "{table}" WHERE weight > 0 ORDER BY cum ASC LIMIT 1)'
    )
    PEEK = 'SELECT name, ts AS item_timestamp FROM "{table}" WHERE weight > 0 ORDER BY cum DESC LIMIT 1 OFFSET {count}'


class PgQueries:
    """SQL text for our PostgreSQL bucket table, v3's attribute names; ``.format(table=name)`` first.

    ``{table}`` is the table given to ``PostgresBucket`` (v3 prefixed it with ``ratelimit___``;
    we do not); it holds every bucket (``bucket`` column) of that table. The bucket never uses
    these; v3's ``PUT`` and ``LEAK`` are absent, as in ``SQLiteQueries``. Format in only trusted names.
    """

    # Item rows have a ts; each bucket's marker row (ts NULL) holds what was trimmed.
    CREATE_BUCKET_TABLE = (
        'CREATE TABLE IF NOT EXISTS "{table}" (bucket text NOT NULL, name text, ts bigint, weight bigint, '
        "cum bigint NOT NULL, oldest bigint)"
    )
    COUNT = 'SELECT coalesce(sum(weight), 0) FROM "{table}" WHERE ts IS NOT NULL'
    FLUSH = 'DELETE FROM "{table}"'
    DROP_TABLE = 'DROP TABLE IF EXISTS "{table}"'
    PEEK = (
        'SELECT name, weight, ts AS item_timestamp FROM "{table}" WHERE ts IS NOT NULL '
        "ORDER BY ts DESC, cum DESC LIMIT 1 OFFSET {offset}"
    )
    LEAK_COUNT = 'SELECT count(*) FROM "{table}" WHERE ts < {timestamp}'
