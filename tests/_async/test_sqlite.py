"""The SQLite bucket beyond the conformance suite: names, files, restarts, locks and failures."""

from __future__ import annotations

import sqlite3
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest

from pyrate_limiter import (
    AsyncLimiter,
    AsyncSQLiteBucket,
    AsyncSQLiteClock,
    BackendError,
    BucketFullException,
    Rate,
    RateItem,
)
from pyrate_limiter._async.buckets.sqlite import default_db_path
from pyrate_limiter._concurrency import AsyncTaskGroup, aresolve
from tests.sqlite_connections import close_connection, sqlite_connection

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

T0 = 1_700_000_000_000

HOSTILE_NAMES = [
    'quote"s',
    "single'quote",
    "x; DROP TABLE victims; --",
    'a"; DROP TABLE victims; --',
    "with space",
    "[bracket]",
    "`tick`",
    "ünïcødé 表 🚦",
    "?1",
    ":name",
    "{brace}",
    "{firsts}",
]


@pytest.fixture
async def database(tmp_path: Path) -> str:
    return str(tmp_path / "state ü.sqlite")


@pytest.fixture
async def conn(database: str, native_async_driver: bool) -> AsyncIterator[Any]:
    connection = await aresolve(sqlite_connection(database, native_async_driver))
    yield connection
    await aresolve(close_connection(connection))


async def test_hostile_table_and_item_names_are_stored_verbatim(conn: Any, database: str) -> None:
    check = sqlite3.connect(database)
    check.execute("CREATE TABLE victims (x)")
    check.commit()
    for table in HOSTILE_NAMES:
        bucket = AsyncSQLiteBucket([Rate(2, 1000)], conn, table)
        assert await bucket.put(RateItem(table, T0))
        assert await bucket.put(RateItem("other " + table, T0 + 1))
        assert not await bucket.put(RateItem(table, T0 + 2))
        newest, oldest = await bucket.peek(0), await bucket.peek(1)
        assert newest is not None
        assert oldest is not None
        assert (oldest.name, newest.name) == (table, "other " + table)
    tables = {row[0] for row in check.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"victims", "pyrate_limiter_pauses", *HOSTILE_NAMES}
    check.close()


async def test_released_item_is_found_by_a_hostile_name(conn: Any) -> None:
    bucket = AsyncSQLiteBucket([Rate(2, 1000)], conn, "t")
    for name in HOSTILE_NAMES:
        assert await bucket.reserve(RateItem(name, T0), None) == (0, None)
        await bucket.release(RateItem("' OR 1=1 --", T0))
        assert await bucket.count() == 1
        await bucket.release(RateItem(name, T0))
        assert await bucket.count() == 0


async def test_state_survives_a_restart(database: str) -> None:
    rates = [Rate(3, 60_000)]
    first = await AsyncSQLiteBucket.init_from_file(rates, db_path=database, table="persisted")
    assert await first.put(RateItem("k", T0, weight=2))
    assert await first.put(RateItem("k", T0 + 1))
    await first.aclose()
    second = await AsyncSQLiteBucket.init_from_file(rates, db_path=database, table="persisted")
    try:
        assert await second.count() == 3
        assert not await second.put(RateItem("k", T0 + 2))
        assert second.failing_rate == rates[0]
        assert not await second.put(RateItem("k", T0 + 60_000))
        assert await second.put(RateItem("k", T0 + 60_001))
    finally:
        await second.aclose()


async def test_default_path_is_one_file_per_user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    path = default_db_path()
    assert path == default_db_path()
    assert path.startswith(str(tmp_path / "cache"))
    bucket = await AsyncSQLiteBucket.init_from_file([Rate(1, 1000)])
    try:
        assert await bucket.put(RateItem("k", T0))
        with sqlite3.connect(path) as check:
            assert check.execute(f'SELECT count(*) FROM "{bucket.table}"').fetchone() == (1,)
            assert check.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        await bucket.aclose()


async def test_items_older_than_the_newest_are_inserted_in_order(conn: Any) -> None:
    bucket = AsyncSQLiteBucket([Rate(3, 1000)], conn, "skew")
    for offset in (500, 100, 300):
        assert await bucket.put(RateItem(f"at {offset}", T0 + offset))
    peeked = [await bucket.peek(i) for i in range(3)]
    assert [item.timestamp - T0 for item in peeked if item is not None] == [500, 300, 100]
    assert await bucket.waiting(RateItem("k", T0 + 600)) == 501
    assert await bucket.leak(T0 + 1100) == 0
    assert await bucket.leak(T0 + 1101) == 1
    assert await bucket.put(RateItem("k", T0 + 1101))


async def test_an_item_stamped_before_a_trim_is_recorded_after_what_was_trimmed(conn: Any) -> None:
    # Its window reaches back over a trimmed entry whose weight no longer counts anywhere:
    # deciding at its own stamp would put 5 units in the window ending at T0 + 1000.
    bucket = AsyncSQLiteBucket([Rate(3, 1000)], conn, "stale")
    assert await bucket.put(RateItem("a", T0, weight=2))
    assert await bucket.put(RateItem("c", T0 + 1001))
    assert await bucket.count() == 1
    assert await bucket.reserve(RateItem("stale", T0 + 1000, weight=2), None) == (0, None, T0 + 1001)
    newest = await bucket.peek(0)
    assert newest is not None
    assert (newest.name, newest.timestamp) == ("stale", T0 + 1001)
    assert await bucket.waiting(RateItem("k", T0 + 998)) == 1004


async def test_releasing_an_earlier_reservation_keeps_later_ones(conn: Any) -> None:
    rate = Rate(2, 1000)
    bucket = AsyncSQLiteBucket([rate], conn, "queue")
    assert await bucket.reserve(RateItem("now", T0, weight=2), None) == (0, None)
    assert await bucket.reserve(RateItem("first", T0 + 1, weight=2), 5000) == (1000, None)
    assert await bucket.reserve(RateItem("second", T0 + 2), 5000) == (2000, None)
    await bucket.release(RateItem("first", T0 + 1001, weight=2))
    assert await bucket.count() == 3
    newest = await bucket.peek(0)
    assert newest is not None
    assert (newest.name, newest.timestamp) == ("second", T0 + 2002)
    assert await bucket.reserve(RateItem("third", T0 + 3), 5000) == (998, None)
    assert await bucket.reserve(RateItem("late", T0 + 4), None) == (1998, rate, (0,))  # nothing left


async def test_a_locked_database_is_waited_for_not_reported_full(conn: Any, database: str) -> None:
    bucket = AsyncSQLiteBucket([Rate(5, 1000)], conn, "busy")
    assert await bucket.put(RateItem("k", T0))
    other = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    timer = threading.Timer(0.3, other.execute, ["COMMIT"])
    timer.start()
    started = time.monotonic()
    try:
        assert await bucket.put(RateItem("k", T0 + 1))
        assert time.monotonic() - started >= 0.25
    finally:
        timer.join()
        other.close()
    assert await bucket.count() == 2


async def test_a_read_only_database_raises_a_backend_error_and_records_nothing(
    database: str, native_async_driver: bool
) -> None:
    writer = await AsyncSQLiteBucket.init_from_file([Rate(5, 1000)], db_path=database, table="ro")
    assert await writer.put(RateItem("k", T0))
    await writer.aclose()
    conn = await aresolve(sqlite_connection(f"file:{database}?mode=ro", native_async_driver, uri=True))
    try:
        bucket = AsyncSQLiteBucket([Rate(5, 1000)], conn, "ro")
        assert await bucket.count() == 1
        readonly = r"SQLite backend of SQLiteBucket \(table 'ro'\) failed: OperationalError: attempt to write"
        with pytest.raises(BackendError, match=readonly):
            await bucket.put(RateItem("k", T0 + 1))
        with pytest.raises(BackendError, match="readonly"):
            await bucket.reserve(RateItem("k", T0 + 1), 1000)
        assert await bucket.count() == 1
        assert not conn.in_transaction
    finally:
        await aresolve(close_connection(conn))


async def test_a_full_database_raises_a_backend_error_and_keeps_what_was_admitted(conn: Any) -> None:
    bucket = AsyncSQLiteBucket([Rate(1000, 60_000)], conn, "full")
    assert await bucket.count() == 0
    await aresolve(conn.execute("PRAGMA max_page_count = 2"))  # the table's first page is its last
    admitted, failure = 0, None
    for i in range(100):
        try:
            assert await bucket.put(RateItem("x" * 1000, T0 + i, weight=2))
        except BackendError as error:
            failure = error
            break
        admitted += 1
    assert "database or disk is full" in str(failure)
    assert 0 < admitted < 100
    assert await bucket.count() == 2 * admitted
    assert not conn.in_transaction


async def test_a_missing_file_with_no_table_raises_a_backend_error(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="no such table"):
        await AsyncSQLiteBucket.init_from_file(
            [Rate(5, 1000)], db_path=str(tmp_path / "new.sqlite"), table="absent", create_new_table=False
        )
    with pytest.raises(BackendError, match="could not open"):
        await AsyncSQLiteBucket.init_from_file([Rate(5, 1000)], db_path=str(tmp_path / "no dir" / "x.sqlite"))


async def test_a_corrupt_file_raises_a_backend_error(tmp_path: Path, native_async_driver: bool) -> None:
    path = tmp_path / "corrupt.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    conn = await aresolve(sqlite_connection(str(path), native_async_driver))
    try:
        bucket = AsyncSQLiteBucket([Rate(5, 1000)], conn, "t")
        with pytest.raises(BackendError, match="file is not a database"):
            await bucket.put(RateItem("k", T0))
    finally:
        await aresolve(close_connection(conn))


async def test_bad_arguments_are_refused_at_construction(conn: Any) -> None:
    with pytest.raises(ValueError, match="table"):
        AsyncSQLiteBucket([Rate(5, 1000)], conn, "")
    with pytest.raises(ValueError, match="table"):
        AsyncSQLiteBucket([Rate(5, 1000)], conn, "a\0b")
    with pytest.raises(ValueError, match="synchronous"):
        AsyncSQLiteBucket([Rate(5, 1000)], conn, "t", synchronous="SOMETIMES")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="SQLite connection"):
        AsyncSQLiteBucket([Rate(5, 1000)], "not a connection", "t")  # type: ignore[arg-type]


async def test_clock_reads_sqlite_time_in_epoch_ms(conn: Any) -> None:
    bucket = AsyncSQLiteBucket([Rate(5, 1000)], conn, "clocked")
    default = AsyncSQLiteClock.default()
    try:
        for clock in (AsyncSQLiteClock(conn), AsyncSQLiteClock(bucket), default):
            before = int(time.time() * 1000)
            now = await clock.now()
            assert before - 5 <= now <= int(time.time() * 1000) + 5
    finally:
        await default.aclose()


async def test_buckets_sharing_a_connection_decide_concurrently(conn: Any) -> None:
    buckets = [AsyncSQLiteBucket([Rate(5, 60_000)], conn, f"shared {i}") for i in range(3)]
    admitted: list[int] = []

    async def worker(i: int) -> None:
        if await buckets[i % 3].reserve(RateItem("k", T0 + i), None) == (0, None):
            admitted.append(i % 3)

    async with AsyncTaskGroup() as tasks:
        for i in range(30):
            tasks.start_soon(worker, i)
    assert sorted(admitted) == [0] * 5 + [1] * 5 + [2] * 5
    assert [await bucket.count() for bucket in buckets] == [5, 5, 5]


async def test_a_limiter_over_the_bucket_waits_exactly_and_then_refuses(conn: Any) -> None:
    bucket = AsyncSQLiteBucket([Rate(2, 200)], conn, "limited")
    limiter = AsyncLimiter(bucket, clock=AsyncSQLiteClock(bucket), max_delay=300)
    try:
        started = time.monotonic()
        assert [await limiter.try_acquire("k") for _ in range(4)] == [True] * 4
        assert time.monotonic() - started >= 0.15
        with pytest.raises(BucketFullException):
            await limiter.try_acquire("k", max_delay=None)
    finally:
        await limiter.aclose()
