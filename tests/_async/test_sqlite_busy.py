"""A decision allowed to wait ``max_delay`` ms waits no longer than that for another connection's lock.

Each lock is a real ``BEGIN IMMEDIATE`` in a second connection to the file; each wait is bracketed
with ``time.monotonic``, with bounds far from the busy timeouts so that they never flake.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest

from pyrate_limiter import AsyncLimiter, AsyncSQLiteBucket, BackendError, Rate, RateItem
from pyrate_limiter._concurrency import aresolve
from tests.sqlite_connections import close_connection, sqlite_connection

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from pathlib import Path

T0 = 1_700_000_000_000
BUSY_S = 10.0  # the connection's busy timeout: a bounded wait ends long before it
LOCKED = r"locked by another connection for longer than the 200 ms this decision may wait \(its max_delay\)"


@pytest.fixture
async def database(tmp_path: Path) -> str:
    return str(tmp_path / "busy ü.sqlite")


@pytest.fixture
async def conn(database: str, native_async_driver: bool) -> AsyncIterator[Any]:
    connection = await aresolve(sqlite_connection(database, native_async_driver, timeout=BUSY_S))
    yield connection
    await aresolve(close_connection(connection))


@pytest.fixture
async def bucket(conn: Any) -> AsyncSQLiteBucket:
    made = AsyncSQLiteBucket([Rate(5, 1000)], conn, "busy")
    assert await made.put(RateItem("k", T0))  # the table exists before anyone locks the file
    return made


@pytest.fixture
def other(database: str) -> Iterator[sqlite3.Connection]:
    """Another process's connection, as far as SQLite can tell."""
    connection = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
    yield connection
    connection.close()


async def test_a_decision_that_may_wait_200_ms_gives_up_on_a_lock_after_about_that(
    bucket: AsyncSQLiteBucket, other: sqlite3.Connection
) -> None:
    other.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        with pytest.raises(BackendError, match=LOCKED) as failure:
            await bucket.reserve(RateItem("k", T0 + 1), 200)
        waited = time.monotonic() - started
    finally:
        other.execute("ROLLBACK")
    assert failure.value.recorded is False
    assert 0.15 <= waited < BUSY_S / 4
    assert await bucket.count() == 1


async def test_the_limiter_s_max_delay_bounds_the_wait_for_a_lock(
    bucket: AsyncSQLiteBucket, other: sqlite3.Connection
) -> None:
    limiter = AsyncLimiter(bucket, max_delay=200)
    other.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        with pytest.raises(BackendError, match=LOCKED):
            await limiter.try_acquire("k")
        assert time.monotonic() - started < BUSY_S / 4
    finally:
        other.execute("ROLLBACK")
    assert await bucket.count() == 1
    assert await limiter.try_acquire("k")


async def test_after_a_bounded_decision_the_others_on_the_connection_wait_the_busy_timeout_again(
    bucket: AsyncSQLiteBucket, conn: Any, other: sqlite3.Connection
) -> None:
    assert await bucket.reserve(RateItem("k", T0 + 1), 200) == (0, None)  # the bound set, no lock met
    for decide in (bucket, AsyncSQLiteBucket([Rate(5, 1000)], conn, "busy")):  # one of the same connection
        other.execute("BEGIN IMMEDIATE")
        timer = threading.Timer(0.5, other.execute, ["COMMIT"])
        timer.start()
        started = time.monotonic()
        try:
            assert await decide.put(RateItem("k", T0 + 2))  # no max_delay: waits out the lock
            assert time.monotonic() - started >= 0.4
        finally:
            timer.join()
    assert await bucket.count() == 4


async def test_a_max_delay_longer_than_the_busy_timeout_leaves_the_busy_timeout(
    database: str, native_async_driver: bool, other: sqlite3.Connection
) -> None:
    conn = await aresolve(sqlite_connection(database, native_async_driver, timeout=0.3))
    try:
        bucket = AsyncSQLiteBucket([Rate(5, 1000)], conn, "short")
        assert await bucket.put(RateItem("k", T0))
        other.execute("BEGIN IMMEDIATE")
        try:
            started = time.monotonic()
            with pytest.raises(BackendError, match="database is locked") as failure:
                await bucket.reserve(RateItem("k", T0 + 1), 60_000)
            assert 0.25 <= time.monotonic() - started < 5
            assert "max_delay" not in str(failure.value)
        finally:
            other.execute("ROLLBACK")
        assert await bucket.count() == 1
    finally:
        await aresolve(close_connection(conn))


async def test_a_connection_at_a_dropped_one_s_address_keeps_its_own_busy_timeout(
    database: str, other: sqlite3.Connection
) -> None:
    """CPython gives a new connection the address of one just freed: none of the old one's timeouts carry over.

    The old connection's busy timeout is 10 s, lowered to 50 ms by a bounded decision; the new
    one's is 0.3 s, and a decision allowed to wait a minute must give up after that.
    """
    freed: set[int] = set()
    for _ in range(100):
        old = sqlite3.connect(database, timeout=BUSY_S, check_same_thread=False)
        assert await AsyncSQLiteBucket([Rate(5, 1000)], old, "reused").reserve(RateItem("k", T0), 50) == (0, None)
        freed.add(id(old))
        old.close()
        del old
        new = sqlite3.connect(database, timeout=0.3, check_same_thread=False)
        if id(new) in freed:
            break
        new.close()
    else:
        pytest.fail("CPython gave no new connection a freed one's address")
    try:
        bucket = AsyncSQLiteBucket([Rate(500, 1000)], new, "reused")
        other.execute("BEGIN IMMEDIATE")
        try:
            started = time.monotonic()
            with pytest.raises(BackendError, match="database is locked"):
                await bucket.reserve(RateItem("k", T0 + 1), 60_000)
            assert time.monotonic() - started < BUSY_S / 2
        finally:
            other.execute("ROLLBACK")
    finally:
        new.close()
