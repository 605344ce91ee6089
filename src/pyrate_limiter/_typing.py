"""Types for annotations only: async sources name them here, so they import no async driver and
unasync can swap each for its sync twin."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import TypeAlias

    # -- redis (buckets/redis.py): either client kind, single node or cluster
    import redis
    import redis.asyncio
    import redis.asyncio.cluster
    import redis.cluster

    RedisClient: TypeAlias = "redis.Redis | redis.cluster.RedisCluster"
    AsyncRedisClient: TypeAlias = "redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster"

    # -- sqlite (buckets/sqlite.py): the async bucket takes aiosqlite's connection or sqlite3's
    import sqlite3

    import aiosqlite

    SQLiteConnection: TypeAlias = sqlite3.Connection
    AsyncSQLiteConnection: TypeAlias = "aiosqlite.Connection | sqlite3.Connection"

    # -- postgres (buckets/postgres.py): the async bucket takes psycopg_pool's async pool or its sync one
    from typing import Any

    import psycopg_pool

    PostgresPool: TypeAlias = "psycopg_pool.ConnectionPool[Any]"
    AsyncPostgresPool: TypeAlias = "psycopg_pool.AsyncConnectionPool[Any] | psycopg_pool.ConnectionPool[Any]"
