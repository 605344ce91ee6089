"""The PostgreSQL bucket when things go wrong: a bucket lock held elsewhere, a connection killed
mid-decision, a server restart. Every failure is a clear BackendError, and nothing is recorded
twice or half."""

from __future__ import annotations

import os
import random
import time
from typing import TYPE_CHECKING, Any

import psycopg
import pytest

from pyrate_limiter import (
    AsyncLimiter,
    AsyncPostgresBucket,
    AsyncPostgresClock,
    BackendError,
    Duration,
    Rate,
    RateItem,
)
from pyrate_limiter._concurrency import AsyncTaskGroup, arun_blocking, asleep

from ..fake_clock import T0, FakeClock
from ..postgres_rows import (
    assert_recorded_exactly,
    finish_audit,
    marker,
    rows,
    start_audit,
    unique_key,
)
from .bucket_kinds import POSTGRES_TABLE, close_postgres_pool, open_postgres_pool

if TYPE_CHECKING:
    from psycopg_pool import AsyncConnectionPool, ConnectionPool

    from tests.servers import PostgresServer


async def test_a_held_bucket_lock_is_waited_for_no_longer_than_max_delay(
    pool: AsyncConnectionPool[Any] | ConnectionPool[Any], postgres_dsn: str
) -> None:
    bucket = AsyncPostgresBucket(pool, POSTGRES_TABLE, [Rate(5, Duration.MINUTE)], key=unique_key())
    assert await bucket.count() == 0  # the table and the function exist before the lock is taken
    limiter = AsyncLimiter(bucket, clock=FakeClock())
    with psycopg.connect(postgres_dsn) as holder:
        holder.execute("SELECT pg_advisory_xact_lock(%s::bigint)", [bucket.lock_key])
        started = time.monotonic()
        with pytest.raises(BackendError, match="LockNotAvailable") as refused:
            await limiter.try_acquire("k", max_delay=300)
        assert refused.value.recorded is False  # the server answered ERROR: its transaction rolled back
        waited = time.monotonic() - started
        holder.rollback()
    # The server waited its lock_timeout: max_delay, raised to LOCK_WAIT_MIN (1 s); without one, the
    # call would wait for the holder.
    assert 1.0 <= waited < 5  # and not the 5 s a call without max_delay waits (LOCK_TIMEOUT)
    assert await bucket.count() == 0
    assert await limiter.try_acquire("k")
    await bucket.flush()


async def test_a_held_bucket_lock_makes_only_that_bucket_wait(
    request: pytest.FixtureRequest, postgres_dsn: str
) -> None:
    # lock_timeout only guards against a hang if the bucket never got its lock: the test waits on events.
    pool = await open_postgres_pool(request, kwargs={"options": "-c lock_timeout=20000"})
    try:
        rates = [Rate(5, Duration.MINUTE)]
        held = AsyncPostgresBucket(pool, POSTGRES_TABLE, rates, key=unique_key())
        free = AsyncPostgresBucket(pool, POSTGRES_TABLE, rates, key=unique_key())
        assert await held.count() == 0  # the table exists before the lock is taken
        results: list[bool] = []

        async def blocked() -> None:
            results.append(await held.put(RateItem("k", T0)))

        with psycopg.connect(postgres_dsn) as holder:
            holder.execute("SELECT pg_advisory_xact_lock(%s::bigint)", [held.lock_key])
            async with AsyncTaskGroup() as tasks:
                tasks.start_soon(blocked)
                await wait_for_lock_waiters(holder, held.lock_key)
                # The other bucket decides while this one's decision waits for its lock.
                assert await free.put(RateItem("k", T0))
                assert await free.count() == 1
                assert results == []
                holder.rollback()  # the waiting decision proceeds: it never reads as a full bucket
        assert results == [True]
        assert await held.count() == 1
        await held.flush()
        await free.flush()
    finally:
        await close_postgres_pool(pool)


async def wait_for_lock_waiters(conn: psycopg.Connection[Any], lock_key: int) -> int:
    """Return the server pid of the session waiting for the advisory lock ``lock_key``, once it waits."""
    # pg_locks splits a bigint advisory key into classid (high 32 bits) and objid (low 32 bits).
    query = (
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        " AND classid::bigint = (%(key)s::bigint >> 32) & 4294967295 AND objid::bigint = %(key)s::bigint & 4294967295"
    )
    deadline = time.monotonic() + 15
    while (waiter := conn.execute(query, {"key": lock_key}).fetchone()) is None:
        assert time.monotonic() < deadline, "the bucket never waited for its lock"
        await asleep(0.005)
    return int(waiter[0])


async def test_a_connection_lost_mid_decision_raises_and_records_nothing(
    request: pytest.FixtureRequest, postgres_dsn: str
) -> None:
    pool = await open_postgres_pool(request, kwargs={"options": "-c lock_timeout=20000"})
    try:
        bucket = AsyncPostgresBucket(pool, POSTGRES_TABLE, [Rate(5, Duration.MINUTE)], key=unique_key())
        assert await bucket.count() == 0
        errors: list[BackendError] = []

        async def doomed() -> None:
            try:
                await bucket.put(RateItem("k", T0))
            except BackendError as error:
                errors.append(error)

        with psycopg.connect(postgres_dsn) as holder:
            holder.execute("SELECT pg_advisory_xact_lock(%s::bigint)", [bucket.lock_key])
            async with AsyncTaskGroup() as tasks:
                tasks.start_soon(doomed)
                # The decision is inside the server, waiting for its lock, when its connection dies.
                waiter = await wait_for_lock_waiters(holder, bucket.lock_key)
                holder.execute("SELECT pg_terminate_backend(%s)", [waiter])
            holder.rollback()
        assert len(errors) == 1
        assert f"PostgreSQL backend of PostgresBucket (table {POSTGRES_TABLE!r}, key {bucket.key!r}) failed" in str(
            errors[0]
        )
        assert f"{type(errors[0].__cause__).__name__}: " in str(errors[0])  # the driver's own words follow
        assert isinstance(errors[0].__cause__, psycopg.OperationalError)
        assert errors[0].recorded is None  # a FATAL may follow a commit: the client cannot know
        assert await bucket.count() == 0
        assert await bucket.put(RateItem("k", T0))
        await bucket.flush()
    finally:
        await close_postgres_pool(pool)


async def test_decisions_whose_connection_dies_are_recorded_once_or_reported_unknown(
    request: pytest.FixtureRequest, postgres_dsn: str
) -> None:
    # Backends killed at random points of their decisions (deciding, committing, answering).
    app = f"pyrate doomed {os.urandom(4).hex()}"
    # No check=True: psycopg_pool's check of a connection whose backend was just killed can wait
    # forever on its socket (seen here, under the batcher's shield); a dead connection handed out
    # unchecked fails at its first use instead, which is what this test is about.
    pool = await open_postgres_pool(request, kwargs={"application_name": app})
    try:
        bucket = AsyncPostgresBucket(pool, POSTGRES_TABLE, [Rate(10**9, Duration.HOUR)], key=unique_key())
        assert await bucket.count() == 0
        admitted: list[str] = []
        unknown: list[str] = []
        refused: list[str] = []
        names = iter(range(10**9))
        stopping = False

        async def traffic() -> None:
            while not stopping:
                i = next(names)
                try:
                    assert await bucket.put(RateItem(f"n{i}", T0 + i))
                    admitted.append(f"n{i}")
                except BackendError as error:
                    (unknown if error.recorded is None else refused).append(f"n{i}")
                    await asleep(0.005)

        with psycopg.connect(postgres_dsn, autocommit=True) as killer:
            async with AsyncTaskGroup() as tasks:
                for _ in range(3):
                    tasks.start_soon(traffic)
                deadline, served = time.monotonic() + 60, -1
                while len(unknown) + len(refused) < 5 or len(admitted) < 30:
                    assert time.monotonic() < deadline, (len(admitted), len(unknown), len(refused))
                    if len(admitted) != served:  # once the pool has served again since the last kill
                        served = len(admitted)
                        killer.execute(
                            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                            [app],
                        )
                    await asleep(random.uniform(0.02, 0.1))  # time for the pool to reconnect
                stopping = True
        stored = [row[0] for row in rows(postgres_dsn, POSTGRES_TABLE, bucket.key)]
        assert len(stored) == len(set(stored))  # nothing is ever sent, hence recorded, twice
        assert set(admitted) <= set(stored)
        assert set(stored) - set(admitted) <= set(unknown)  # what counts without an answer was reported unknown
        assert not set(refused) & set(stored)
        await bucket.flush()
    finally:
        await close_postgres_pool(pool)


async def test_server_restart_gives_clear_errors_then_correct_decisions(
    request: pytest.FixtureRequest, postgres_handle: PostgresServer
) -> None:
    rates = [Rate(4, 50)]
    # check: a pool that tests connections replaces the ones the restart broke before using them.
    pool = await open_postgres_pool(request, check=True, timeout=0.5)
    key = unique_key()
    bucket = AsyncPostgresBucket(pool, POSTGRES_TABLE, rates, key=key)
    clock = AsyncPostgresClock(pool)
    assert await bucket.count() == 0  # the table exists before the audit
    audit = start_audit(postgres_handle.dsn, POSTGRES_TABLE, key)
    admitted: list[tuple[int, int]] = []
    errors: list[BackendError] = []
    stopping = False

    async def traffic() -> None:
        while not stopping:
            item = RateItem("k", int(time.time() * 1000))
            try:
                if await bucket.put(item):
                    admitted.append((item.timestamp, item.weight))
            except BackendError as error:
                errors.append(error)
            await asleep(0.002)

    async def until(condition: Any, what: str) -> None:
        deadline = time.monotonic() + 20
        while not condition():
            assert time.monotonic() < deadline, what
            await asleep(0.01)

    try:
        async with AsyncTaskGroup() as tasks:
            for _ in range(4):
                tasks.start_soon(traffic)
            await until(lambda: len(admitted) >= 10, "no traffic admitted")
            await arun_blocking(postgres_handle.stop)
            await until(lambda: len(errors) >= 4, "no errors while the server is down")
            with pytest.raises(BackendError, match="PostgreSQL backend of PostgresClock failed"):
                await clock.now()
            down = len(admitted)
            await arun_blocking(postgres_handle.start)
            await until(lambda: len(admitted) >= down + 10, "no traffic admitted after the restart")
            stopping = True
    finally:
        stopping = True
        await close_postgres_pool(pool)
    assert all("PostgreSQL backend of PostgresBucket (table " in str(error) for error in errors)
    assert all(isinstance(error.__cause__, psycopg.Error) for error in errors)
    # Nothing recorded that was not admitted, no window over its rates, nothing admitted lost.
    recorded = finish_audit(postgres_handle.dsn, POSTGRES_TABLE, audit)
    stored, mark = rows(postgres_handle.dsn, POSTGRES_TABLE, key), marker(postgres_handle.dsn, POSTGRES_TABLE, key)
    assert_recorded_exactly(admitted, recorded, stored, mark, rates)
