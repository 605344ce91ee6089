"""A database file deleted or replaced under an SQLite bucket stops the bucket: the limit never splits."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sqlite3
from typing import TYPE_CHECKING, Any

import pytest

from pyrate_limiter import AsyncSQLiteBucket, BackendError, Duration, Rate, RateItem
from pyrate_limiter._concurrency import aresolve
from pyrate_limiter._drivers.sqlite_file import CHECK_EVERY
from tests.sqlite_connections import close_connection, sqlite_connection

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from pathlib import Path
    from typing import TypeAlias

    Change: TypeAlias = tuple[Callable[[str], None], str]
    """What is done to the database file, and the word the bucket's error uses for it."""

T0 = 1_700_000_000_000
RATE = Rate(10, Duration.MINUTE)


def delete(path: str) -> None:
    os.remove(path)


def delete_with_its_wal_and_shm(path: str) -> None:
    for suffix in ("", "-wal", "-shm"):
        os.remove(path + suffix)


def replace(path: str) -> None:
    """Put another database at ``path``, with the bucket's table empty: what a reopened bucket would find."""
    other = path + ".other"
    with contextlib.closing(sqlite3.connect(other)) as conn:
        conn.execute("CREATE TABLE rate_bucket (cum INTEGER PRIMARY KEY, ts INTEGER, weight INTEGER, name TEXT)")
        conn.commit()
    os.replace(other, path)


CHANGES: dict[str, Change] = {
    "deleted": (delete, "deleted"),
    "deleted with its -wal and -shm": (delete_with_its_wal_and_shm, "deleted"),
    "replaced": (replace, "replaced by another file"),
}


@pytest.fixture(params=sorted(CHANGES))
def change(request: pytest.FixtureRequest) -> Change:
    return CHANGES[str(request.param)]


@pytest.fixture
async def database(tmp_path: Path) -> str:
    return str(tmp_path / "limits ü.sqlite")


@pytest.fixture
async def bucket(database: str) -> AsyncIterator[AsyncSQLiteBucket]:
    opened = await AsyncSQLiteBucket.init_from_file([RATE], db_path=database)
    yield opened
    await opened.aclose()


def stopped(database: str, what: str) -> Any:
    """``pytest.raises`` for the error of a bucket whose file at ``database`` was ``what``."""
    return pytest.raises(BackendError, match=f"{re.escape(repr(database))} .* was {what} while in use")


async def test_a_changed_file_stops_the_bucket_at_its_next_leak_with_one_warning(
    bucket: AsyncSQLiteBucket, database: str, change: Change, caplog: pytest.LogCaptureFixture
) -> None:
    alter, what = change
    for i in range(6):
        assert await bucket.put(RateItem("k", T0 + i))
    alter(database)
    with caplog.at_level(logging.WARNING, logger="pyrate_limiter"):
        with stopped(database, what):
            await bucket.leak(T0 + 10)
        # From then on, whatever it is asked, and even if the path held the old file again.
        with stopped(database, what):
            await bucket.put(RateItem("k", T0 + 11))
        with stopped(database, what):
            await bucket.count()
    logged = [record for record in caplog.records if record.name == "pyrate_limiter"]
    assert [record.levelno for record in logged] == [logging.WARNING]
    assert f"{database!r} of SQLiteBucket (table 'rate_bucket') was {what}" in logged[0].getMessage()
    assert "open the path again" in logged[0].getMessage()


async def test_decisions_on_a_changed_file_stop_within_check_every_and_admit_nothing_beyond_the_limit(
    bucket: AsyncSQLiteBucket, database: str, change: Change
) -> None:
    alter, what = change
    for i in range(6):
        assert await bucket.put(RateItem("k", T0 + i))
    alter(database)
    decided: list[bool] = []
    with stopped(database, what):
        for i in range(CHECK_EVERY):
            decided.append(await bucket.put(RateItem("k", T0 + 100 + i)))
    # Until it stops, it counts in the old file as before: 4 more fit, then none.
    assert 4 <= len(decided) < CHECK_EVERY
    assert decided == [True] * 4 + [False] * (len(decided) - 4)


async def test_a_given_connection_is_watched_through_its_file_and_left_open(
    database: str, native_async_driver: bool, change: Change
) -> None:
    alter, what = change
    conn = await aresolve(sqlite_connection(database, native_async_driver))
    try:
        bucket = AsyncSQLiteBucket([RATE], conn)
        assert await bucket.put(RateItem("k", T0))  # the first use learns the file
        alter(database)
        with stopped(database, what):
            await bucket.leak(T0 + 1)
        await bucket.aclose()
        cursor = await aresolve(conn.execute("SELECT count(*) FROM rate_bucket"))
        assert list(await aresolve(cursor.fetchall())) == [(1,)]  # still open, on the old file
    finally:
        await aresolve(close_connection(conn))


async def test_a_failed_transaction_checks_the_file_at_once(database: str, native_async_driver: bool) -> None:
    conn = await aresolve(sqlite_connection(database, native_async_driver, timeout=0.05))
    holder = sqlite3.connect(database, isolation_level=None)
    try:
        bucket = AsyncSQLiteBucket([RATE], conn)
        assert await bucket.put(RateItem("k", T0))
        holder.execute("BEGIN IMMEDIATE")  # the next decision waits 50 ms for it, then fails
        replace(database)
        with stopped(database, "replaced by another file") as failure:
            await bucket.put(RateItem("k", T0 + 1))
        assert "database is locked" in str(failure.value.__cause__)
    finally:
        holder.close()
        await aresolve(close_connection(conn))


async def test_a_link_turned_to_another_file_is_a_replaced_file(tmp_path: Path) -> None:
    link = str(tmp_path / "current.sqlite")
    for name in ("first.sqlite", "second.sqlite"):
        (tmp_path / name).touch()
    os.symlink(tmp_path / "first.sqlite", link)
    bucket = await AsyncSQLiteBucket.init_from_file([RATE], db_path=link)
    try:
        assert await bucket.put(RateItem("k", T0))
        os.symlink(tmp_path / "second.sqlite", link + ".new")
        os.replace(link + ".new", link)
        with stopped(link, "replaced by another file"):
            await bucket.leak(T0 + 1)
    finally:
        await bucket.aclose()


async def test_in_memory_databases_and_a_relative_path_after_chdir_raise_nothing(
    tmp_path: Path, native_async_driver: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    relative = await AsyncSQLiteBucket.init_from_file([RATE], db_path="relative.sqlite")
    monkeypatch.chdir(tmp_path.parent)
    owned = await AsyncSQLiteBucket.init_from_file([RATE], db_path=":memory:")
    conn = await aresolve(sqlite_connection(":memory:", native_async_driver))
    try:
        for bucket in (relative, owned, AsyncSQLiteBucket([RATE], conn)):
            for i in range(2 * CHECK_EVERY):
                await bucket.put(RateItem("k", T0 + i))
                await bucket.leak(T0 + i)
            assert await bucket.count() == RATE.limit
    finally:
        await relative.aclose()
        await owned.aclose()
        await aresolve(close_connection(conn))
