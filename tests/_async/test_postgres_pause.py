"""A pause on the PostgreSQL bucket: kept by max in the bucket's marker, read by every decision with
the rest of its state, shared by every bucket object (every process) on the same table and key."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from psycopg import sql

from pyrate_limiter import AsyncPostgresBucket, Rate, RateItem
from pyrate_limiter._drivers.postgres_table import derived_name

from ..fake_clock import T0
from ..postgres_rows import marker, rows, unique_key
from .bucket_kinds import POSTGRES_TABLE, close_postgres_pool, open_postgres_pool

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from psycopg_pool import AsyncConnectionPool, ConnectionPool

I = 1000  # noqa: E741 - the interval, named as in the rule
P = T0 + 500  # the pause's end in most tests


@pytest.fixture
async def pool(request: pytest.FixtureRequest) -> AsyncIterator[AsyncConnectionPool[Any] | ConnectionPool[Any]]:
    opened = await open_postgres_pool(request)
    yield opened
    await close_postgres_pool(opened)


@pytest.fixture
async def bucket(pool: AsyncConnectionPool[Any] | ConnectionPool[Any]) -> AsyncIterator[AsyncPostgresBucket]:
    made = AsyncPostgresBucket(pool, POSTGRES_TABLE, [Rate(2, I), Rate(3, 10 * I)], key=unique_key())
    yield made
    await made.flush()


async def test_a_pause_refuses_an_item_that_would_fit_until_its_end(bucket: AsyncPostgresBucket) -> None:
    assert await bucket.paused_until("k") == 0
    assert await bucket.pause_until("k", P) == P
    assert await bucket.paused_until("k") == P
    # Only the pause blocks: the first rate is named, and the wait runs to the pause's end.
    assert (await bucket.reserve(RateItem("k", T0), None))[:2] == (P - T0, bucket.rates[0])
    assert (await bucket.reserve(RateItem("k", T0 + 100), P - T0 - 101))[:2] == (P - T0 - 100, bucket.rates[0])
    assert not await bucket.put(RateItem("k", P - 1))
    assert bucket.failing_rate == bucket.rates[0]
    assert await bucket.count() == 0
    # An item stamped at the end decides as if there were no pause.
    assert await bucket.put(RateItem("k", P))
    assert await bucket.count() == 1


async def test_a_wait_long_enough_reserves_at_the_end_and_the_next_queues_by_the_rule(
    bucket: AsyncPostgresBucket, postgres_dsn: str
) -> None:
    await bucket.pause_until("k", P)
    first = RateItem("a", T0)
    assert (await bucket.reserve(first, P - T0))[:2] == (P - T0, None)
    assert first.timestamp == T0  # keeps its stamp: the limiter sleeps the delay
    assert (await bucket.reserve(RateItem("b", T0 + 10), I))[:2] == (P - T0 - 10, None)
    # Two at P fill the first rate: the third fits when the first frees its room, a span after P.
    assert (await bucket.reserve(RateItem("c", T0 + 20), None))[:2] == (P + I + 1 - T0 - 20, bucket.rates[0])
    assert (await bucket.reserve(RateItem("c", T0 + 20), 2 * I))[:2] == (P + I + 1 - T0 - 20, None)
    assert [(row[0], row[1]) for row in rows(postgres_dsn, POSTGRES_TABLE, bucket.key)] == [
        ("a", P),
        ("b", P),
        ("c", P + I + 1),
    ]
    # The second rate (3 in 10 s) now pushes a fourth item well past the pause.
    assert (await bucket.reserve(RateItem("d", T0 + 30), None))[:2] == (P + 10 * I + 1 - T0 - 30, bucket.rates[1])


async def test_a_weight_that_never_fits_stays_never_under_a_pause(bucket: AsyncPostgresBucket) -> None:
    await bucket.pause_until("k", P)
    assert (await bucket.reserve(RateItem("k", T0, weight=3), 10 * I))[:2] == (-1, bucket.rates[0])
    assert await bucket.waiting(RateItem("k", T0, weight=4)) == -1


async def test_a_shorter_pause_never_shortens_a_longer_one(bucket: AsyncPostgresBucket) -> None:
    assert await bucket.pause_until("k", P) == P
    assert await bucket.pause_until("other name", P - 100) == P
    assert await bucket.pause_until("k", 0) == P
    assert await bucket.paused_until("k") == P
    assert (await bucket.reserve(RateItem("k", T0), None))[:2] == (P - T0, bucket.rates[0])
    assert await bucket.pause_until("k", P + 1) == P + 1
    assert await bucket.paused_until("k") == P + 1


async def test_waiting_and_state_count_the_pause_and_leave_usage_alone(bucket: AsyncPostgresBucket) -> None:
    assert await bucket.put(RateItem("k", T0 - 100))
    await bucket.pause_until("k", P)
    assert await bucket.waiting(RateItem("k", T0)) == P - T0
    assert await bucket.waiting(RateItem("k", P)) == 0
    retry_after, usage = await bucket.state(RateItem("k", T0))
    assert retry_after == P - T0
    assert usage == [(bucket.rates[0], 1, I + 1 - 100), (bucket.rates[1], 1, 10 * I + 1 - 100)]
    assert (await bucket.state(RateItem("k", P)))[0] == 0
    assert (await bucket.state(RateItem("k", T0, weight=5)))[0] == -1
    # A rate that frees later than the pause's end is what waiting reports.
    assert await bucket.put(RateItem("k", P))
    assert await bucket.waiting(RateItem("k", T0)) == T0 - 100 + I + 1 - T0
    assert (await bucket.state(RateItem("k", T0)))[0] == T0 - 100 + I + 1 - T0


async def test_the_pause_survives_leaks_and_trims_until_its_end_and_flush_forgets_it(
    bucket: AsyncPostgresBucket, postgres_dsn: str
) -> None:
    late = T0 + 100 * I
    assert await bucket.put(RateItem("k", T0))
    await bucket.pause_until("k", late)
    assert await bucket.leak(T0 + 50 * I) == 1  # every item gone, the marker stays
    assert rows(postgres_dsn, POSTGRES_TABLE, bucket.key) == []
    assert await bucket.paused_until("k") == late
    # A decision far past the longest window trims too, and still meets the pause.
    assert (await bucket.reserve(RateItem("k", T0 + 60 * I), None))[:2] == (40 * I, bucket.rates[0])
    assert await bucket.put(RateItem("k", late))
    assert await bucket.leak(late + 20 * I) == 1
    assert await bucket.paused_until("k") == late
    await bucket.flush()
    assert marker(postgres_dsn, POSTGRES_TABLE, bucket.key) is None
    assert await bucket.paused_until("k") == 0
    assert await bucket.put(RateItem("k", T0))


async def test_buckets_on_the_same_table_and_key_share_the_pause(
    request: pytest.FixtureRequest, pool: AsyncConnectionPool[Any] | ConnectionPool[Any]
) -> None:
    # Another pool: another process's connections.
    other_pool = await open_postgres_pool(request)
    try:
        key = unique_key()
        here = AsyncPostgresBucket(pool, POSTGRES_TABLE, [Rate(2, I)], key=key)
        there = AsyncPostgresBucket(other_pool, POSTGRES_TABLE, [Rate(2, I)], key=key)
        elsewhere = AsyncPostgresBucket(pool, POSTGRES_TABLE, [Rate(2, I)], key=unique_key())
        assert await here.put(RateItem("k", T0))
        assert await there.pause_until("k", P) == P
        assert await here.paused_until("k") == P
        assert (await here.reserve(RateItem("k", T0 + 1), None))[:2] == (P - T0 - 1, here.rates[0])
        assert await here.pause_until("k", P + 10) == P + 10
        assert await there.waiting(RateItem("k", T0 + 1)) == P + 10 - T0 - 1
        assert await elsewhere.put(RateItem("k", T0 + 1))  # another key: no pause
        await here.flush()
        assert await there.paused_until("k") == 0
        await elsewhere.flush()
    finally:
        await close_postgres_pool(other_pool)


async def test_a_batch_applies_the_pause_to_each_request(bucket: AsyncPostgresBucket) -> None:
    await bucket.pause_until("k", P)
    # One call of the deciding function, as concurrent reservations of one event loop share.
    requests = [("a", T0, 1, None), ("b", T0, 1, I), ("c", P, 1, None), ("d", T0 + 1, 1, I), ("e", P + 1, 1, 0)]
    decided = await bucket._decide(5000, True, requests)
    assert decided == [
        (P - T0, 0, T0, (2, 3)),  # refused: only the pause, every rate with room
        (P - T0, None, T0, ()),  # reserved at P
        (0, None, P, ()),  # stamped at the end: fits beside it
        (P + I + 1 - T0 - 1, 0, T0 + 1, (0, 1)),  # the first rate, full at P, frees a span later
        (P + I + 1 - P - 1, 0, P + 1, (0, 1)),  # no wait allowed
    ]
    assert await bucket.count() == 2


async def test_a_table_from_before_pauses_gets_them_on_first_use(
    pool: AsyncConnectionPool[Any] | ConnectionPool[Any], postgres_dsn: str
) -> None:
    for first in ("put", "state", "paused_until", "pause_until"):
        table = f"before pauses {os.urandom(6).hex()}"
        bucket = AsyncPostgresBucket(pool, table, [Rate(3, I)], key=unique_key())
        assert await bucket.put(RateItem("k", T0))
        # What the previous version left: no paused column, decide4 and no pause function.
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            for suffix in ("decide5", "pause"):
                conn.execute(sql.SQL("DROP FUNCTION {}").format(sql.Identifier(derived_name(table, suffix))))
            conn.execute(sql.SQL("ALTER TABLE {} DROP COLUMN paused").format(sql.Identifier(table)))
        if first == "put":
            assert await bucket.put(RateItem("k", T0 + 1))
        elif first == "state":
            assert (await bucket.state(RateItem("k", T0 + 1)))[0] == 0
        elif first == "paused_until":
            assert await bucket.paused_until("k") == 0
        assert await bucket.pause_until("k", P) == P
        assert (await bucket.reserve(RateItem("k", T0 + 2), None))[:2] == (P - T0 - 2, bucket.rates[0])
        assert await bucket.count() == (2 if first == "put" else 1)
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(table)))


async def test_bad_pauses_are_refused(bucket: AsyncPostgresBucket) -> None:
    for until in ("1", 1.5, None, True):
        with pytest.raises(TypeError, match="pause ends"):
            await bucket.pause_until("k", until)  # type: ignore[arg-type]
    for until in (-1, 2**62 + 1):
        with pytest.raises(ValueError, match="pause ends"):
            await bucket.pause_until("k", until)
    with pytest.raises(ValueError, match="NUL"):
        await bucket.pause_until("nul\0", P)
    with pytest.raises(TypeError, match="name"):
        await bucket.paused_until(b"k")  # type: ignore[arg-type]
    assert await bucket.paused_until("k") == 0
