"""Every bucket the conformance suite runs against; a backend adds one function and one entry.

Each maker builds a bucket for ``rates`` (named uniquely by ``key``) and returns it; the
``request`` gives access to server fixtures.
"""

from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING, Any, Protocol

from psycopg_pool import AsyncConnectionPool, ConnectionPool

from pyrate_limiter import (
    AsyncAbstractBucket,
    AsyncInMemoryBucket,
    AsyncPostgresBucket,
    AsyncRedisBucket,
    AsyncSQLiteBucket,
    RateItem,
    validate_rate_list,
)
from pyrate_limiter._concurrency import aresolve, arun_blocking
from tests.redis_clients import close_client, cluster_client, redis_client
from tests.sqlite_connections import close_connection, sqlite_connection

if TYPE_CHECKING:
    import pytest

    from pyrate_limiter import Rate


class AsyncListBucket(AsyncAbstractBucket):
    """A user's bucket written against the v3 docs: a plain list, only the abstract methods."""

    def __init__(self, rates: list[Rate]) -> None:
        if not validate_rate_list(rates):
            raise ValueError(f"bad rates {rates!r}")
        self.rates = rates
        self.items: list[RateItem] = []

    async def put(self, item: RateItem) -> bool:
        for rate in self.rates:
            used = sum(1 for old in self.items if old.timestamp >= item.timestamp - rate.interval)
            if used + item.weight > rate.limit:
                self.failing_rate = rate
                return False
        self.failing_rate = None
        self.items += [RateItem(item.name, item.timestamp) for _ in range(item.weight)]
        self.items.sort(key=lambda unit: unit.timestamp)
        return True

    async def leak(self, current_timestamp: int | None = None) -> int:
        if current_timestamp is None:
            return 0
        horizon = current_timestamp - self.rates[-1].interval  # an item at the horizon still counts
        kept = [item for item in self.items if item.timestamp >= horizon]
        removed, self.items = len(self.items) - len(kept), kept
        return removed

    async def flush(self) -> None:
        self.items.clear()
        self.failing_rate = None

    async def count(self) -> int:
        return len(self.items)

    async def peek(self, index: int) -> RateItem | None:
        return self.items[-1 - index] if 0 <= index < len(self.items) else None


async def in_memory(rates: list[Rate], key: str, request: pytest.FixtureRequest) -> AsyncAbstractBucket:
    return AsyncInMemoryBucket(rates)


async def custom_list(rates: list[Rate], key: str, request: pytest.FixtureRequest) -> AsyncAbstractBucket:
    return AsyncListBucket(rates)


class AsyncPoolOwningPostgresBucket(AsyncPostgresBucket):
    """A PostgreSQL bucket that closes its pool with itself: the suite makes one pool per bucket."""

    def __init__(self, pool: AsyncConnectionPool[Any] | ConnectionPool[Any], *args: Any, **kwargs: Any) -> None:
        self.owned_pool = pool
        super().__init__(pool, *args, **kwargs)

    async def aclose(self) -> None:
        await super().aclose()
        await close_postgres_pool(self.owned_pool)


POSTGRES_TABLE = 'pyrate "conformance"; DROP TABLE users; --'
_POSTGRES_RUN = os.urandom(4).hex()  # keys unique to this run: a failed run may leave rows behind


async def open_postgres_pool(
    request: pytest.FixtureRequest, *, check: bool = False, **kwargs: Any
) -> AsyncConnectionPool[Any] | ConnectionPool[Any]:
    """An open pool on the test server: the async pool where it can run, else the sync one.

    :param check: test each connection before handing it out (recovers at once after a restart).
    """
    dsn = request.getfixturevalue("postgres_dsn")
    kwargs = {"min_size": 1, "max_size": 4, "timeout": 10.0, **kwargs}
    if request.getfixturevalue("native_async_driver"):
        if check:
            kwargs["check"] = AsyncConnectionPool.check_connection
        native = AsyncConnectionPool(dsn, open=False, **kwargs)
        await native.open(wait=True)
        return native
    if check:
        kwargs["check"] = ConnectionPool.check_connection
    pool = ConnectionPool(dsn, open=False, **kwargs)
    await arun_blocking(functools.partial(pool.open, wait=True))
    return pool


async def close_postgres_pool(pool: AsyncConnectionPool[Any] | ConnectionPool[Any]) -> None:
    if isinstance(pool, AsyncConnectionPool):
        await pool.close()
    else:
        await arun_blocking(pool.close)


async def postgres(rates: list[Rate], key: str, request: pytest.FixtureRequest) -> AsyncAbstractBucket:
    pool = await open_postgres_pool(request)
    try:
        return AsyncPoolOwningPostgresBucket(pool, POSTGRES_TABLE, rates, key=f"{key}-{_POSTGRES_RUN}")
    except BaseException:
        await close_postgres_pool(pool)
        raise


class AsyncClientOwningRedisBucket(AsyncRedisBucket):
    """A Redis bucket that closes its client with itself: the suite makes one client per bucket."""

    async def aclose(self) -> None:
        await super().aclose()
        await aresolve(close_client(self.redis))


async def redis(rates: list[Rate], key: str, request: pytest.FixtureRequest) -> AsyncAbstractBucket:
    client = redis_client(request.getfixturevalue("redis_url"), request.getfixturevalue("native_async_driver"))
    try:
        bucket: AsyncAbstractBucket = await AsyncClientOwningRedisBucket.init(rates, client, key)
        return bucket
    except BaseException:
        await aresolve(close_client(client))
        raise


async def redis_cluster(rates: list[Rate], key: str, request: pytest.FixtureRequest) -> AsyncAbstractBucket:
    cluster = request.getfixturevalue("redis_cluster_handle")
    client = cluster_client(cluster, request.getfixturevalue("native_async_driver"))
    try:
        bucket: AsyncAbstractBucket = await AsyncClientOwningRedisBucket.init(rates, client, key)
        return bucket
    except BaseException:
        await aresolve(close_client(client))
        raise


class AsyncConnectionOwningSQLiteBucket(AsyncSQLiteBucket):
    """An SQLite bucket that closes its connection with itself: the suite makes one per bucket."""

    async def aclose(self) -> None:
        await super().aclose()
        await aresolve(close_connection(self.conn))


SQLITE_TABLE = 'pyrate "conformance"; DROP TABLE users; -- ü'


async def sqlite_bucket(rates: list[Rate], database: str, request: pytest.FixtureRequest) -> AsyncAbstractBucket:
    conn = await aresolve(sqlite_connection(database, request.getfixturevalue("native_async_driver")))
    try:
        return AsyncConnectionOwningSQLiteBucket(rates, conn, SQLITE_TABLE)
    except BaseException:
        await aresolve(close_connection(conn))
        raise


async def sqlite_memory(rates: list[Rate], key: str, request: pytest.FixtureRequest) -> AsyncAbstractBucket:
    return await sqlite_bucket(rates, ":memory:", request)


async def sqlite_file(rates: list[Rate], key: str, request: pytest.FixtureRequest) -> AsyncAbstractBucket:
    folder = request.getfixturevalue("tmp_path") / "a folder ü"
    folder.mkdir(exist_ok=True)
    return await sqlite_bucket(rates, str(folder / f"{key}.sqlite"), request)


class AsyncMaker(Protocol):
    async def __call__(self, rates: list[Rate], key: str, request: pytest.FixtureRequest) -> AsyncAbstractBucket: ...


MAKERS: dict[str, AsyncMaker] = {
    "in_memory": in_memory,
    "custom_list": custom_list,
    "postgres": postgres,
    "redis": redis,
    "redis_cluster": redis_cluster,
    "sqlite_memory": sqlite_memory,
    "sqlite_file": sqlite_file,
}

# Makers whose buckets implement the atomic reservation (the custom list bucket does not).
ATOMIC: set[str] = {"in_memory", "postgres", "redis", "redis_cluster", "sqlite_memory", "sqlite_file"}
