"""Floors: what any limiter on a backend must do at the least, timed by the same ``measure`` in
the worker right after each round of the scenario it judges."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import sqlite3
import tempfile
import threading
import time
from typing import TYPE_CHECKING, Any

from .measure import ameasure, measure, unique

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from .measure import Row


FLOORS = {
    "memory": ["floor: Lock acquire+release", "floor: time.time()"],
    "redis": ["floor: Redis EVALSHA, one ZADD"],
    "sqlite": ["floor: SQLite BEGIN IMMEDIATE/INSERT/COMMIT"],
    "postgres": ["floor: PostgreSQL one-statement txn"],
    "postgres tasks": ["floor: PostgreSQL one-statement txn, 100 tasks"],
    "redis tasks": ["floor: Redis EVALSHA, one ZADD, 100 tasks"],
}
"""Each floor's rows; a scenario's floor is their sum (in memory: the lock plus the clock read)."""


def floor_memory(_pl: Any, p: Row) -> list[Row]:
    """An uncontended ``Lock`` acquire and release, then a ``time.time()`` call: every in-memory
    acquire takes a lock and reads the clock, so it cannot cost less than their sum. Explicit calls,
    not ``with``: the cheapest way to hold a lock."""
    lock = threading.Lock()
    acquire, release = lock.acquire, lock.release

    def lock_cycle() -> None:
        acquire()
        release()

    return [measure(lock_cycle, (), p["seconds"] / 2, cpu=True), measure(time.time, (), p["seconds"] / 2, cpu=True)]


def floor_redis(_pl: Any, p: Row) -> list[Row]:
    """``EVALSHA`` of a script that runs one ``ZADD``: one round trip, one script call, one write."""
    import redis

    with redis.Redis.from_url(p["redis_url"]) as client, redis_floor_call(client) as add:
        return [measure(add, (), p["seconds"])]


@contextlib.contextmanager
def redis_floor_call(client: Any) -> Iterator[Callable[[], None]]:
    """The Redis floor's one call, on ``client``; its key is deleted at the end."""
    key, scores = unique("benchfloor"), itertools.count()
    evalsha, sha = client.evalsha, client.script_load("return redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])")

    def add() -> None:
        score = next(scores)
        evalsha(sha, 1, key, score, score)

    try:
        yield add
    finally:
        client.delete(key)


def floor_sqlite(_pl: Any, p: Row) -> list[Row]:
    """``BEGIN IMMEDIATE``, one ``INSERT``, ``COMMIT`` on a file with the pragmas ``SQLiteBucket``
    sets (``journal_mode=WAL``, ``synchronous=NORMAL``): the write transaction each decision is."""
    with tempfile.TemporaryDirectory(prefix="bench-floor-") as directory:
        conn = sqlite3.connect(f"{directory}/floor.sqlite", isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("CREATE TABLE floor (n INTEGER)")
            execute, numbers = conn.execute, itertools.count()

            def insert() -> None:
                execute("BEGIN IMMEDIATE")
                execute("INSERT INTO floor VALUES (?)", (next(numbers),))
                execute("COMMIT")

            return [measure(insert, (), p["seconds"])]
        finally:
            conn.close()


def floor_postgres(_pl: Any, p: Row) -> list[Row]:
    """One autocommitted ``INSERT`` into a logged table, on a connection from a ``psycopg_pool`` pool:
    the one-statement transaction a ``PostgresBucket`` decision is, without its logic."""
    from psycopg_pool import ConnectionPool

    table, numbers = unique("bench_floor"), itertools.count()
    with ConnectionPool(p["dsn"], min_size=1, max_size=2, kwargs={"autocommit": True}, open=True) as pool:
        with pool.connection() as conn:
            conn.execute(f"CREATE TABLE {table} (n bigint)")
        query = f"INSERT INTO {table} VALUES (%s)"

        def insert() -> None:
            with pool.connection() as conn:
                conn.execute(query, (next(numbers),))

        try:
            return [measure(insert, (), p["seconds"])]
        finally:
            with pool.connection() as conn:
                conn.execute(f"DROP TABLE {table}")


def floor_postgres_tasks(_pl: Any, p: Row) -> list[Row]:
    """100 asyncio tasks, each running one autocommitted ``INSERT`` into a logged table on a
    connection of one ``psycopg_pool`` async pool of 4: the round trips a limiter making one
    one-statement transaction per decision cannot beat at that concurrency."""
    return asyncio.run(postgres_tasks_floor(p["dsn"], 100, p["seconds"]))


async def postgres_tasks_floor(dsn: str, tasks: int, seconds: float) -> list[Row]:
    """The tasks floor's row, measured in the running event loop."""
    from psycopg_pool import AsyncConnectionPool

    table, numbers = unique("bench_floor"), itertools.count()
    async with AsyncConnectionPool(dsn, min_size=4, max_size=4, kwargs={"autocommit": True}, open=False) as pool:
        async with pool.connection() as conn:
            await conn.execute(f"CREATE TABLE {table} (n bigint)")
        query = f"INSERT INTO {table} VALUES (%s)"

        async def insert(_name: str) -> None:
            async with pool.connection() as conn:
                await conn.execute(query, (next(numbers),))

        try:
            return [await ameasure(insert, tasks, seconds, "asyncio", cpu=False)]
        finally:
            async with pool.connection() as conn:
                await conn.execute(f"DROP TABLE {table}")


def floor_redis_tasks(_pl: Any, p: Row) -> list[Row]:
    """100 asyncio tasks, each sending the Redis floor's one ``EVALSHA`` on one ``redis.asyncio``
    client: the round trips a limiter making one script call per decision cannot beat at that
    concurrency."""
    return asyncio.run(redis_tasks_floor(p["redis_url"], 100, p["seconds"]))


async def redis_tasks_floor(url: str, tasks: int, seconds: float) -> list[Row]:
    """The Redis tasks floor's row, measured in the running event loop, on a client as the
    scenario's (up to 200 connections)."""
    import redis.asyncio

    key, scores = unique("benchfloor"), itertools.count()
    client = redis.asyncio.Redis.from_url(url, max_connections=200)
    try:
        sha = await client.script_load("return redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])")

        async def add(_name: str) -> None:
            score = next(scores)
            await client.evalsha(sha, 1, key, score, score)

        try:
            return [await ameasure(add, tasks, seconds, "asyncio", cpu=False)]
        finally:
            await client.delete(key)
    finally:
        await client.aclose()
