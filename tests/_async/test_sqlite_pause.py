"""The SQLite bucket's pause: one row beside the table, read by each decision's one statement.

Stamps are explicit (the items' clock is the test's), so every wait is exact arithmetic.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any

import pytest

from pyrate_limiter import AsyncSQLiteBucket, Rate, RateItem
from pyrate_limiter._concurrency import aresolve
from pyrate_limiter._window import NEVER
from tests.sqlite_connections import close_connection, sqlite_connection

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

T0 = 1_700_000_000_000
P = T0 + 5_000  # the pause's end in most tests
RATES = [Rate(2, 1000), Rate(5, 10_000)]
TABLE = "paused 'bucket'"


@pytest.fixture
async def database(tmp_path: Path) -> str:
    return str(tmp_path / "pause ü.sqlite")


@pytest.fixture
async def conn(database: str, native_async_driver: bool) -> AsyncIterator[Any]:
    connection = await aresolve(sqlite_connection(database, native_async_driver))
    yield connection
    await aresolve(close_connection(connection))


@pytest.fixture
async def other_conn(database: str, native_async_driver: bool) -> AsyncIterator[Any]:
    """A second connection to the same file: another process, as far as SQLite can tell."""
    connection = await aresolve(sqlite_connection(database, native_async_driver))
    yield connection
    await aresolve(close_connection(connection))


@pytest.fixture
async def bucket(conn: Any) -> AsyncSQLiteBucket:
    return AsyncSQLiteBucket(RATES, conn, TABLE)


async def test_a_pause_refuses_an_item_that_would_fit_with_the_wait_until_its_end(bucket: AsyncSQLiteBucket) -> None:
    assert await bucket.pause_until("k", P) == P
    assert (await bucket.reserve(RateItem("k", T0), None))[:2] == (P - T0, RATES[0])
    assert (await bucket.reserve(RateItem("k", T0 + 10), 4_000))[:2] == (P - T0 - 10, RATES[0])
    assert await bucket.count() == 0
    assert not await bucket.put(RateItem("k", T0))


async def test_a_wait_long_enough_records_the_item_at_the_end_of_the_pause(bucket: AsyncSQLiteBucket) -> None:
    await bucket.pause_until("k", P)
    item = RateItem("k", T0)
    assert (await bucket.reserve(item, P - T0))[:2] == (P - T0, None)
    assert item.timestamp == T0  # the limiter sleeps the delay from its stamp
    assert (await bucket.reserve(RateItem("k", T0 + 1), P - T0))[:2] == (P - T0 - 1, None)
    recorded = [await bucket.peek(i) for i in range(2)]
    assert [unit.timestamp for unit in recorded if unit is not None] == [P, P]
    # The third is held by the first rate past the pause: both reservations end their span at P + 1001.
    assert (await bucket.reserve(RateItem("k", T0 + 2), None))[:2] == (P + 1001 - T0 - 2, RATES[0])
    assert (await bucket.reserve(RateItem("k", T0 + 2), 10_000))[:2] == (P + 1001 - T0 - 2, None)
    newest = await bucket.peek(0)
    assert newest is not None
    assert newest.timestamp == P + 1001


async def test_the_rate_that_holds_an_item_past_the_pause_is_the_one_reported(bucket: AsyncSQLiteBucket) -> None:
    for stamp in (T0, T0 + 1, T0 + 1100, T0 + 1101, T0 + 2200):
        assert await bucket.put(RateItem("k", stamp))
    # The second rate frees room at T0 + 10_001, after the pause: it is the one that refuses.
    await bucket.pause_until("k", T0 + 5_000)
    assert (await bucket.reserve(RateItem("k", T0 + 2300), None))[:2] == (7_701, RATES[1])
    # A pause ending later holds the item alone: the first rate is named.
    await bucket.pause_until("k", T0 + 20_000)
    assert (await bucket.reserve(RateItem("k", T0 + 2300), None))[:2] == (17_700, RATES[0])


async def test_an_item_stamped_at_the_end_of_the_pause_decides_as_without_one(bucket: AsyncSQLiteBucket) -> None:
    await bucket.pause_until("k", P)
    assert (await bucket.reserve(RateItem("k", P - 1), None))[:2] == (1, RATES[0])
    assert (await bucket.reserve(RateItem("k", P), None))[:2] == (0, None)
    assert await bucket.put(RateItem("k", P + 1))
    assert (await bucket.reserve(RateItem("k", P + 2), None))[:2] == (1001 - 2, RATES[0])


async def test_a_shorter_pause_never_shortens_a_longer_one(bucket: AsyncSQLiteBucket) -> None:
    assert await bucket.paused_until("k") == 0
    assert await bucket.pause_until("k", P) == P
    assert await bucket.pause_until("other name", P - 3_000) == P  # one pause per bucket
    assert await bucket.pause_until("k", 0) == P
    assert await bucket.paused_until("k") == P
    assert (await bucket.reserve(RateItem("k", T0), None))[:2] == (P - T0, RATES[0])
    assert await bucket.pause_until("k", P + 1) == P + 1


async def test_waiting_and_state_count_the_pause_but_not_its_usage(bucket: AsyncSQLiteBucket) -> None:
    assert await bucket.put(RateItem("k", T0))
    await bucket.pause_until("k", P)
    assert await bucket.waiting(RateItem("k", T0 + 100)) == P - T0 - 100
    retry_after, usage = await bucket.state(RateItem("k", T0 + 100))
    assert retry_after == P - T0 - 100
    assert usage == [(RATES[0], 1, 901), (RATES[1], 1, 9_901)]
    # A weight that never fits still never fits, paused or not.
    assert await bucket.waiting(RateItem("k", T0, weight=3)) == NEVER
    assert (await bucket.state(RateItem("k", T0, weight=3)))[0] == NEVER
    assert (await bucket.reserve(RateItem("k", T0, weight=3), 10**9))[:2] == (NEVER, RATES[0])
    assert await bucket.waiting(RateItem("k", P)) == 0


async def test_the_pause_outlives_leaks_and_trims_until_it_ends_and_a_flush_forgets_it(
    bucket: AsyncSQLiteBucket,
) -> None:
    late = T0 + 100_000
    for i in range(2):
        assert await bucket.put(RateItem("k", T0 + i))
    await bucket.pause_until("k", late)
    assert await bucket.leak(T0 + 50_000) == 2
    assert await bucket.count() == 0
    # A decision far past the rows trims them too (the trimmed row of weight 0 stays).
    assert (await bucket.reserve(RateItem("k", T0 + 60_000), None))[:2] == (40_000, RATES[0])
    assert await bucket.leak(T0 + 90_000) == 0
    assert await bucket.paused_until("k") == late
    assert (await bucket.reserve(RateItem("k", late - 1), None))[:2] == (1, RATES[0])
    await bucket.flush()
    assert await bucket.paused_until("k") == 0
    assert (await bucket.reserve(RateItem("k", T0 + 60_000), None))[:2] == (0, None)


async def test_two_buckets_on_one_table_share_the_pause(conn: Any, other_conn: Any) -> None:
    here, there = AsyncSQLiteBucket(RATES, conn, TABLE), AsyncSQLiteBucket(RATES, other_conn, TABLE)
    assert await here.pause_until("k", P) == P
    assert (await there.reserve(RateItem("k", T0), None))[:2] == (P - T0, RATES[0])
    assert await there.pause_until("k", P - 1) == P
    assert await there.pause_until("k", P + 7) == P + 7
    assert await here.paused_until("k") == P + 7
    assert await here.waiting(RateItem("k", T0)) == P + 7 - T0
    await there.flush()
    assert await here.paused_until("k") == 0


async def test_each_table_has_its_own_pause(conn: Any) -> None:
    buckets = [AsyncSQLiteBucket(RATES, conn, name) for name in ("a", "a'", "a''", 'a"')]
    for i, each in enumerate(buckets):
        assert await each.pause_until("k", P + i) == P + i
    for i, each in enumerate(buckets):
        assert await each.paused_until("k") == P + i
        assert await each.waiting(RateItem("k", T0)) == P + i - T0
    await buckets[0].flush()
    assert [await each.paused_until("k") for each in buckets] == [0, P + 1, P + 2, P + 3]


async def test_the_table_of_pauses_is_no_bucket_table(conn: Any) -> None:
    for name in ("pyrate_limiter_pauses", "PYRATE_limiter_pauses"):  # SQLite's names ignore ASCII case
        with pytest.raises(ValueError, match="pyrate_limiter_pauses"):
            AsyncSQLiteBucket(RATES, conn, name)


async def test_a_table_of_the_version_without_pauses_keeps_its_items_and_takes_a_pause(
    database: str, conn: Any
) -> None:
    # The file as the previous version left it: the bucket's table only, with two items.
    old = sqlite3.connect(database)
    old.execute(
        'CREATE TABLE "old" (cum INTEGER PRIMARY KEY, ts INTEGER NOT NULL, weight INTEGER NOT NULL, name TEXT NOT NULL)'
    )
    old.executemany('INSERT INTO "old" VALUES (?, ?, 1, ?)', [(1, T0, "a"), (2, T0 + 1, "b")])
    old.commit()
    old.close()
    bucket = await AsyncSQLiteBucket.init_from_file(RATES, "old", database, create_new_table=False)
    try:
        assert await bucket.count() == 2
        assert (await bucket.reserve(RateItem("k", T0 + 2), None))[:2] == (999, RATES[0])
        assert await bucket.pause_until("k", P) == P
        assert (await bucket.reserve(RateItem("k", T0 + 2000), None))[:2] == (P - T0 - 2000, RATES[0])
    finally:
        await bucket.aclose()
    given = AsyncSQLiteBucket(RATES, conn, "old")
    assert await given.paused_until("k") == P


async def test_bad_pause_arguments_are_refused_before_anything_is_written(bucket: AsyncSQLiteBucket) -> None:
    for until in (1.5, "1", None, True):
        with pytest.raises(TypeError, match="pause ends"):
            await bucket.pause_until("k", until)  # type: ignore[arg-type]
    for until in (-1, 2**62 + 1, 2**63):
        with pytest.raises(ValueError, match="pause ends"):
            await bucket.pause_until("k", until)
    assert await bucket.pause_until("k", 2**62) == 2**62  # the latest end there is
    await bucket.flush()
    with pytest.raises(TypeError, match="a name must be a str"):
        await bucket.pause_until(None, P)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="NUL"):
        await bucket.paused_until("k\0")
    assert await bucket.paused_until("k") == 0
