"""Types for annotations only: async sources name them here, so they import no async driver and
unasync can swap each for its sync twin."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from typing import Any, TypeAlias

    # -- batching.py: what sends a batch of requests and returns their replies
    BatchSender: TypeAlias = "Callable[[list[Any]], list[Any]]"
    AsyncBatchSender: TypeAlias = "Callable[[list[Any]], Awaitable[list[Any]]]"

    # -- redis (buckets/redis.py): either client kind, single node or cluster
    import redis
    import redis.asyncio
    import redis.asyncio.cluster
    import redis.cluster

    RedisClient: TypeAlias = "redis.Redis | redis.cluster.RedisCluster"
    AsyncRedisClient: TypeAlias = "redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster"

    # -- sqlite (buckets/sqlite.py): aiosqlite's connection, and its sync twin
    import sqlite3

    import aiosqlite

    SQLiteConnection: TypeAlias = sqlite3.Connection
    AsyncSQLiteConnection: TypeAlias = aiosqlite.Connection
