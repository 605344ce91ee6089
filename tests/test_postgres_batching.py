"""Concurrent reservations of one async PostgreSQL bucket share transactions, each decided as if it
had waited for the bucket's lock in the order it was made (async only: threads send theirs alone)."""

from __future__ import annotations

import os
import random

import anyio
import pytest

from pyrate_limiter import AsyncInMemoryBucket, AsyncPostgresBucket, Rate, RateItem

from ._async.bucket_kinds import POSTGRES_TABLE, close_postgres_pool, open_postgres_pool
from ._async.test_postgres import (
    T0,
    assert_recorded_exactly,
    finish_audit,
    finish_witness,
    marker,
    rows,
    start_audit,
    start_witness,
)

pytestmark = pytest.mark.anyio

RATES = [Rate(20, 100), Rate(50, 1000)]
Decision = tuple[int, Rate | None, int]  # delay, refusing rate, the item's stamp after


async def test_concurrent_reservations_share_transactions_and_are_decided_in_the_order_made(
    request: pytest.FixtureRequest, postgres_dsn: str
) -> None:
    # Under trio the bucket gets the sync pool, its calls in worker threads: batches form the same way.
    pool = await open_postgres_pool(request)
    key = f"batching-{os.urandom(6).hex()}"
    bucket = AsyncPostgresBucket(pool, POSTGRES_TABLE, RATES, key=key)
    rng = random.Random(3)
    made: list[tuple[RateItem, int | None]] = []  # copies, in the order the bucket was asked
    answers: dict[int, Decision] = {}

    async def reserve(item: RateItem, max_delay: int | None) -> None:
        position = len(made)
        made.append((RateItem(item.name, item.timestamp, item.weight), max_delay))
        delay, rate = (await bucket.reserve(item, max_delay))[:2]  # nothing awaited since the append
        answers[position] = (delay, rate, item.timestamp)

    try:
        assert await bucket.count() == 0  # the table exists before the audit
        audit = start_audit(postgres_dsn, POSTGRES_TABLE, key)
        witness = start_witness(postgres_dsn, POSTGRES_TABLE, key)
        try:
            async with anyio.create_task_group() as tasks:
                for i in range(150):
                    # Items up to two windows late meet trims inside a batch; heavy ones meet refusals.
                    stamp = T0 + 10 * i - rng.choice([0, 0, 0, 3, 150, 1100, 2100])
                    item = RateItem(f"n{i % 3}", stamp, rng.choice([0, 1, 1, 2, 3, 13, 51]))
                    # One lock wait for all (LOCK_WAIT_MIN): calls with another wait form their own batches.
                    tasks.start_soon(reserve, item, rng.choice([0, 300, 900]))
        finally:
            recorded = finish_audit(postgres_dsn, POSTGRES_TABLE, audit)
            transactions = {xid for xid, _ in finish_witness(postgres_dsn, POSTGRES_TABLE, witness)}
        stored, mark = rows(postgres_dsn, POSTGRES_TABLE, key), marker(postgres_dsn, POSTGRES_TABLE, key)
        await bucket.flush()
    finally:
        await close_postgres_pool(pool)
    # The decisions of one bucket deciding each in turn, in the order they were made.
    reference = AsyncInMemoryBucket(RATES)
    expected: list[Decision] = []
    for item, max_delay in made:
        delay, rate = (await reference.reserve(item, max_delay))[:2]
        expected.append((delay, rate, item.timestamp))
    decided = [answers[position] for position in range(len(made))]
    assert decided == expected
    pairs = zip(made, decided, strict=True)
    admitted = [(stamp + delay, item.weight) for (item, _), (delay, rate, stamp) in pairs if rate is None]
    assert 0 < len(admitted) < len(made)  # some fitted, some did not
    assert_recorded_exactly(admitted, recorded, stored, mark, RATES)
    # 150 decisions in a few transactions, not one each.
    assert len(transactions) < 20, len(transactions)
