"""The PostgreSQL bucket and clock against a real server: what the conformance suite cannot see."""

from __future__ import annotations

import os
import random
import time
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from pyrate_limiter import (
    AsyncInMemoryBucket,
    AsyncLimiter,
    AsyncPostgresBucket,
    AsyncPostgresClock,
    BucketFullException,
    Duration,
    Rate,
    RateItem,
)
from pyrate_limiter._concurrency import AsyncTaskGroup, arun_blocking
from pyrate_limiter._drivers.postgres_table import DECIDE, derived_name
from pyrate_limiter._rate import recorded_at

from ..fake_clock import T0
from ..postgres_rows import (
    finish_witness,
    marker,
    rows,
    start_witness,
    unique_key,
)
from .bucket_kinds import POSTGRES_TABLE, close_postgres_pool, open_postgres_pool

if TYPE_CHECKING:
    from psycopg_pool import ConnectionPool


HOSTILE_NAMES = ["'); DROP TABLE users; --", 'quote " and \\ backslash', "$$ $body$ %s %(x)s {table}", "日本語 ünïcode"]


async def exercise(bucket: AsyncPostgresBucket, reference: AsyncInMemoryBucket, *, seed: int, steps: int) -> None:
    """Random puts, reservations, releases, waits and leaks on both buckets; every answer must agree.

    Items come up to two windows late (clock skew between processes), so decisions meet the
    floor left by trimming; ``count`` and a few ``peek`` are compared after every step.
    """
    rng = random.Random(seed)
    longest = bucket.rates[-1].interval
    skews = [0, 0, 0, 0, 1, 3, 60, longest // 2, longest - 1, longest, longest + 1, 2 * longest]
    reserved: list[RateItem] = []
    t = T0
    for _ in range(steps):
        t += rng.choice([0, 1, 7, 30, 120, 400, longest])
        item = RateItem(rng.choice(HOSTILE_NAMES), t - rng.choice(skews), rng.choice([0, 1, 1, 2, 3, 13]))
        op = rng.random()
        if op < 0.35:
            assert await bucket.put(item) == await reference.put(item), item
            assert bucket.failing_rate == reference.failing_rate
        elif op < 0.7:
            max_delay = rng.choice([None, 0, 50, 500, 5000])
            decided = await bucket.reserve(item, max_delay)
            assert decided == await reference.reserve(item, max_delay), (item, max_delay)
            if decided[1] is None and decided[0] > 0:
                reserved.append(RateItem(item.name, recorded_at(item, decided), item.weight))
        elif op < 0.8 and reserved:
            gone = reserved.pop(rng.randrange(len(reserved)))
            await bucket.release(gone)
            await reference.release(gone)
        elif op < 0.9:
            horizon = t - rng.choice(skews)
            assert await bucket.leak(horizon) == await reference.leak(horizon)
        else:
            assert await bucket.waiting(item) == await reference.waiting(item), item
        count = await reference.count()
        assert await bucket.count() == count
        for index in (0, rng.randrange(count + 2), count - 1, count):
            assert await bucket.peek(index) == await reference.peek(index), index
    await bucket.flush()
    await reference.flush()


@pytest.mark.parametrize(("seed", "durable"), [(5, True), (6, True), (7, False)])
async def test_decisions_counts_and_peeks_match_the_in_memory_bucket(
    pool: AsyncConnectionPool[Any] | ConnectionPool[Any], seed: int, durable: bool
) -> None:
    rates = [Rate(5, 100), Rate(12, 1000)]
    bucket = AsyncPostgresBucket(pool, POSTGRES_TABLE, rates, key=unique_key(), durable=durable)
    reference = AsyncInMemoryBucket(rates)
    await exercise(bucket, reference, seed=seed, steps=300)
    # After a flush both forget the trimmed past as well.
    await exercise(bucket, reference, seed=seed + 100, steps=60)


async def test_a_late_item_is_decided_where_the_trimmed_windows_end(
    pool: AsyncConnectionPool[Any] | ConnectionPool[Any],
) -> None:
    bucket = AsyncPostgresBucket(pool, POSTGRES_TABLE, [Rate(3, 1000)], key=unique_key())
    assert await bucket.put(RateItem("a", T0, weight=2))
    assert await bucket.put(RateItem("c", T0 + 1001))  # trims a: nothing is judged before T0 + 1001
    # One ms late (clock skew): decided and recorded at T0 + 1001, where a is out of every window.
    assert await bucket.put(RateItem("late", T0 + 1000, weight=2))
    assert await bucket.peek(0) == RateItem("late", T0 + 1001)
    # A late reservation is decided at that time too; its delay counts from it, and the verdict
    # says where it was recorded.
    assert await bucket.reserve(RateItem("r", T0 + 500), 10_000) == (1001, None, T0 + 2002)
    assert await bucket.peek(0) == RateItem("r", T0 + 2002)
    assert await bucket.waiting(RateItem("w", T0 + 400)) == 1602
    await bucket.flush()


async def test_one_row_per_item_and_old_rows_trimmed_by_the_decision(
    pool: AsyncConnectionPool[Any] | ConnectionPool[Any], postgres_dsn: str
) -> None:
    key = unique_key()
    bucket = AsyncPostgresBucket(pool, POSTGRES_TABLE, [Rate(10, 100), Rate(100, Duration.SECOND)], key=key)
    assert await bucket.put(RateItem("heavy", T0, weight=10))
    assert await bucket.count() == 10
    assert rows(postgres_dsn, POSTGRES_TABLE, key) == [("heavy", T0, 10, 10)]
    assert marker(postgres_dsn, POSTGRES_TABLE, key) == (None, 0, T0)  # made with the first item
    assert await bucket.put(RateItem("next", T0 + 999, weight=3))
    assert len(rows(postgres_dsn, POSTGRES_TABLE, key)) == 2
    # At T0 + 1000 heavy still counts; the decision after deletes it and keeps its stamp and
    # weight in the marker.
    assert await bucket.put(RateItem("still", T0 + 1000))
    assert len(rows(postgres_dsn, POSTGRES_TABLE, key)) == 3
    assert await bucket.put(RateItem("last", T0 + 1001))
    assert rows(postgres_dsn, POSTGRES_TABLE, key) == [
        ("next", T0 + 999, 3, 13),
        ("still", T0 + 1000, 1, 14),
        ("last", T0 + 1001, 1, 15),
    ]
    assert marker(postgres_dsn, POSTGRES_TABLE, key) == (T0, 10, T0 + 999)
    assert await bucket.count() == 5
    assert await bucket.leak(T0 + 2001) == 4  # last, stamped T0 + 1001, still counts at T0 + 2001
    assert await bucket.leak(T0 + 2002) == 1
    assert rows(postgres_dsn, POSTGRES_TABLE, key) == []
    assert marker(postgres_dsn, POSTGRES_TABLE, key) == (T0 + 1001, 15, None)
    assert (await bucket.count(), await bucket.peek(0)) == (0, None)
    await bucket.flush()
    assert (rows(postgres_dsn, POSTGRES_TABLE, key), marker(postgres_dsn, POSTGRES_TABLE, key)) == ([], None)


async def test_buckets_in_one_table_are_independent(pool: AsyncConnectionPool[Any] | ConnectionPool[Any]) -> None:
    rate = Rate(2, Duration.MINUTE)
    first = AsyncPostgresBucket(pool, POSTGRES_TABLE, [rate], key=unique_key())
    second = AsyncPostgresBucket(pool, POSTGRES_TABLE, [rate], key=unique_key())
    assert await first.put(RateItem("k", T0, weight=2))
    assert not await first.put(RateItem("k", T0))
    assert await second.put(RateItem("k", T0, weight=2))
    assert (await first.count(), await second.count()) == (2, 2)
    await first.flush()
    assert (await first.count(), await second.count()) == (0, 2)
    await second.flush()


async def test_a_pool_of_dict_rows_and_transactions_serves_and_keeps_its_settings(
    request: pytest.FixtureRequest,
) -> None:
    # One connection, so that the one the bucket used is the one checked afterwards.
    pool = await open_postgres_pool(request, min_size=1, max_size=1, kwargs={"row_factory": dict_row})
    try:
        bucket = AsyncPostgresBucket(pool, POSTGRES_TABLE, [Rate(2, Duration.MINUTE)], key=unique_key())
        assert await bucket.put(RateItem("a", T0, weight=2))
        assert not await bucket.put(RateItem("b", T0))
        assert (await bucket.count(), await bucket.peek(1)) == (2, RateItem("a", T0))
        await bucket.flush()
        if isinstance(pool, AsyncConnectionPool):
            conn: Any = await pool.getconn()
            await pool.putconn(conn)
        else:
            conn = await arun_blocking(pool.getconn)
            await arun_blocking(pool.putconn, conn)
        assert (conn.autocommit, conn.row_factory) == (False, dict_row)
    finally:
        await close_postgres_pool(pool)


async def test_a_non_durable_bucket_commits_without_waiting_for_the_flush_and_keeps_its_limits(
    request: pytest.FixtureRequest, postgres_dsn: str
) -> None:
    # The test server runs with synchronous_commit=off: these sessions ask for on, as a server does by default.
    pool = await open_postgres_pool(request, kwargs={"options": "-c synchronous_commit=on"})
    try:
        rates = [Rate(3, Duration.MINUTE)]
        fast = AsyncPostgresBucket(pool, POSTGRES_TABLE, rates, key=unique_key(), durable=False)
        safe = AsyncPostgresBucket(pool, POSTGRES_TABLE, rates, key=unique_key())
        assert (await fast.count(), await safe.count()) == (0, 0)  # the table exists before the witnesses
        witnesses = {bucket.key: start_witness(postgres_dsn, POSTGRES_TABLE, bucket.key) for bucket in (fast, safe)}
        try:
            for bucket in (fast, safe):
                assert [await bucket.put(RateItem("k", T0 + i)) for i in range(4)] == [True, True, True, False]
                assert await bucket.reserve(RateItem("k", T0 + 10), 60_000) == (Duration.MINUTE - 9, None)
                assert await bucket.count() == 4
        finally:
            seen = {key: finish_witness(postgres_dsn, POSTGRES_TABLE, name) for key, name in witnesses.items()}
        # Each item's transaction committed with the bucket's setting; the session's own is untouched.
        assert [setting for _, setting in seen[fast.key]] == ["off"] * 4
        assert [setting for _, setting in seen[safe.key]] == ["on"] * 4
        async with AsyncTaskGroup() as tasks:
            tasks.start_soon(fast.flush)
            tasks.start_soon(safe.flush)
    finally:
        await close_postgres_pool(pool)


async def test_a_table_made_before_the_current_decide_function_gets_it_on_first_use(
    pool: AsyncConnectionPool[Any] | ConnectionPool[Any], postgres_dsn: str
) -> None:
    table = f"older {os.urandom(6).hex()}"
    bucket = AsyncPostgresBucket(pool, table, [Rate(2, Duration.MINUTE)], key=unique_key())
    assert await bucket.put(RateItem("k", T0))
    # What an older version left: the table, its indexes and trim, and an older decide function only.
    function = sql.Identifier(derived_name(table, DECIDE))
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP FUNCTION {}").format(function))
    assert await bucket.put(RateItem("k", T0 + 1))
    assert not await bucket.put(RateItem("k", T0 + 2))
    assert await bucket.count() == 2
    await bucket.flush()


async def test_a_statement_the_session_forgot_is_prepared_again(request: pytest.FixtureRequest) -> None:
    # One connection, so that the one that forgot is the one the bucket uses next (autocommit: DISCARD
    # runs outside a transaction).
    pool = await open_postgres_pool(request, min_size=1, max_size=1, kwargs={"autocommit": True})
    try:
        bucket = AsyncPostgresBucket(pool, POSTGRES_TABLE, [Rate(5, Duration.MINUTE)], key=unique_key())
        for i, forget in enumerate(["DEALLOCATE ALL", "DISCARD ALL"]):
            assert await bucket.put(RateItem("k", T0 + i))
            await run_on_pool(pool, forget)
        assert await bucket.put(RateItem("k", T0 + 2))
        assert await bucket.count() == 3
        await bucket.flush()
    finally:
        await close_postgres_pool(pool)


async def test_a_pool_without_prepared_statements_gets_none_from_the_bucket(request: pytest.FixtureRequest) -> None:
    # prepare_threshold=None: what a pool behind PgBouncer in transaction mode needs.
    pool = await open_postgres_pool(request, min_size=1, max_size=1, kwargs={"prepare_threshold": None})
    try:
        bucket = AsyncPostgresBucket(pool, POSTGRES_TABLE, [Rate(2, Duration.MINUTE)], key=unique_key())
        assert [await bucket.put(RateItem("k", T0 + i)) for i in range(3)] == [True, True, False]
        assert await run_on_pool(pool, "SELECT count(*) FROM pg_prepared_statements") == (0,)
        await bucket.flush()
    finally:
        await close_postgres_pool(pool)


async def run_on_pool(pool: AsyncConnectionPool[Any] | ConnectionPool[Any], query: str) -> tuple[Any, ...] | None:
    """Run ``query`` on a connection of ``pool`` and return its first row, if any."""
    if isinstance(pool, AsyncConnectionPool):
        async with pool.connection() as conn:
            cursor = await conn.execute(query)
            return None if cursor.description is None else await cursor.fetchone()

    def blocking() -> tuple[Any, ...] | None:
        with pool.connection() as conn:
            cursor = conn.execute(query)
            return None if cursor.description is None else cursor.fetchone()

    return await arun_blocking(blocking)


@pytest.mark.parametrize(
    "table", ['x"; DROP TABLE users; --', "$$ $body$ ' %s {}", "Ünï 表 MiXeD", "pg_catalog.pg_class", "t" * 63]
)
async def test_hostile_table_and_item_names_are_data(
    pool: AsyncConnectionPool[Any] | ConnectionPool[Any], postgres_dsn: str, table: str
) -> None:
    key = f"k'; DROP TABLE users; -- {unique_key()}"
    bucket = AsyncPostgresBucket(pool, table, [Rate(len(HOSTILE_NAMES), Duration.MINUTE)], key=key)
    for i, name in enumerate(HOSTILE_NAMES):
        assert await bucket.put(RateItem(name, T0 + i))
    assert not await bucket.put(RateItem("k", T0 + 10))
    assert [await bucket.peek(i) for i in range(len(HOSTILE_NAMES))] == [
        RateItem(name, T0 + i) for i, name in reversed(list(enumerate(HOSTILE_NAMES)))
    ]
    assert [row[0] for row in rows(postgres_dsn, table, key)] == HOSTILE_NAMES
    await bucket.flush()
    with psycopg.connect(postgres_dsn) as conn:
        assert conn.execute("SELECT to_regclass('pg_catalog.pg_class') IS NOT NULL").fetchone() == (True,)


async def test_names_postgres_cannot_hold_are_refused(pool: AsyncConnectionPool[Any] | ConnectionPool[Any]) -> None:
    rates = [Rate(5, Duration.MINUTE)]
    for table in ("", "nul\0", "t" * 64, "é" * 32):
        with pytest.raises(ValueError, match="table"):
            AsyncPostgresBucket(pool, table, rates)
    with pytest.raises(ValueError, match="key"):
        AsyncPostgresBucket(pool, POSTGRES_TABLE, rates, key="nul\0")
    with pytest.raises(TypeError, match="pool"):
        AsyncPostgresBucket(object(), POSTGRES_TABLE, rates)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="durable"):
        AsyncPostgresBucket(pool, POSTGRES_TABLE, rates, durable="no")  # type: ignore[arg-type]
    bucket = AsyncPostgresBucket(pool, POSTGRES_TABLE, rates, key=unique_key())
    with pytest.raises(ValueError, match="NUL"):
        await bucket.put(RateItem("nul\0", T0))
    assert await bucket.count() == 0


async def test_concurrent_first_use_creates_the_table_once(
    pool: AsyncConnectionPool[Any] | ConnectionPool[Any], postgres_dsn: str
) -> None:
    table = f"fresh {os.urandom(6).hex()}"
    rates = [Rate(3, Duration.MINUTE)]
    buckets = [AsyncPostgresBucket(pool, table, rates, key=f"b{i}") for i in range(8)]
    results: list[bool] = []

    async def first_put(bucket: AsyncPostgresBucket) -> None:
        results.append(await bucket.put(RateItem("k", T0, weight=3)))

    async with AsyncTaskGroup() as tasks:
        for bucket in buckets:
            tasks.start_soon(first_put, bucket)
    assert results == [True] * 8
    with psycopg.connect(postgres_dsn) as conn:
        indexes = conn.execute("SELECT count(*) FROM pg_indexes WHERE tablename = %s", [table]).fetchone()
    assert indexes == (2,)


async def test_server_clock_is_epoch_ms_whatever_the_session_time_zone(request: pytest.FixtureRequest) -> None:
    pool = await open_postgres_pool(request, kwargs={"options": "-c TimeZone=Pacific/Kiritimati"})
    try:
        before = int(time.time() * 1000)
        now = await AsyncPostgresClock(pool).now()
        after = int(time.time() * 1000)
        assert before - 1000 <= now <= after + 1000  # the server runs on this machine's clock
    finally:
        await close_postgres_pool(pool)


async def test_limiter_with_server_clock(
    pool: AsyncConnectionPool[Any] | ConnectionPool[Any], postgres_dsn: str
) -> None:
    key = unique_key()
    bucket = AsyncPostgresBucket(pool, POSTGRES_TABLE, [Rate(3, Duration.MINUTE)], key=key)
    limiter = AsyncLimiter(bucket, clock=AsyncPostgresClock(pool))
    before = int(time.time() * 1000)
    for _ in range(3):
        assert await limiter.try_acquire("k")
    with pytest.raises(BucketFullException):
        await limiter.try_acquire("k")
    assert all(abs(row[1] - before) < 5000 for row in rows(postgres_dsn, POSTGRES_TABLE, key))
    await bucket.flush()
