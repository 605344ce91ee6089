"""Concurrent reservations of one async PostgreSQL bucket share transactions, each decided as if it
had waited for the bucket's lock in the order it was made (async only: threads send theirs alone)."""

from __future__ import annotations

import os
import random
from typing import TYPE_CHECKING

import anyio
import pytest

from pyrate_limiter import AsyncInMemoryBucket, AsyncPostgresBucket, Rate, RateItem
from pyrate_limiter._rate import recorded_at

from ._async.bucket_kinds import POSTGRES_TABLE, close_postgres_pool, open_postgres_pool
from .fake_clock import T0
from .postgres_rows import (
    assert_recorded_exactly,
    finish_audit,
    finish_witness,
    marker,
    rows,
    start_audit,
    start_witness,
)

if TYPE_CHECKING:
    from pyrate_limiter._rate import Verdict

pytestmark = pytest.mark.anyio

RATES = [Rate(20, 100), Rate(50, 1000)]


async def test_concurrent_reservations_share_transactions_and_are_decided_in_the_order_made(
    request: pytest.FixtureRequest, postgres_dsn: str
) -> None:
    # Under trio the bucket gets the sync pool, its calls in worker threads: batches form the same way.
    pool = await open_postgres_pool(request)
    key = f"batching-{os.urandom(6).hex()}"
    bucket = AsyncPostgresBucket(pool, POSTGRES_TABLE, RATES, key=key)
    rng = random.Random(3)
    made: list[tuple[RateItem, int | None]] = []  # copies, in the order the bucket was asked
    answers: dict[int, Verdict] = {}

    async def reserve(item: RateItem, max_delay: int | None) -> None:
        position = len(made)
        made.append((RateItem(item.name, item.timestamp, item.weight), max_delay))
        answers[position] = await bucket.reserve(item, max_delay)  # nothing awaited since the append

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
    expected = [await reference.reserve(item, max_delay) for item, max_delay in made]
    decided = [answers[position] for position in range(len(made))]
    assert decided == expected
    pairs = [(item, verdict) for (item, _), verdict in zip(made, decided, strict=True) if verdict[1] is None]
    assert 0 < len(pairs) < len(made)  # some fitted, some did not
    assert_recorded_exactly([(item.timestamp, item.weight) for item, _ in pairs], recorded, stored, mark, RATES)
    # Each verdict says where its item went, as the server's own witness saw it.
    assert sorted(recorded) == sorted((recorded_at(item, verdict), item.weight) for item, verdict in pairs)
    # 150 decisions in a few transactions, not one each.
    assert len(transactions) < 20, len(transactions)
