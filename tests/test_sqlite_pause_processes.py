"""A pause set in one process holds back the others sharing the SQLite file (or ``MultiprocessBucket``)."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from typing import TYPE_CHECKING

import pytest

from pyrate_limiter import MultiprocessBucket, Rate, RateItem, SQLiteBucket

if TYPE_CHECKING:
    from pathlib import Path

T0 = 1_700_000_000_000
P = T0 + 5_000
RATES = [Rate(3, 1000)]
TABLE = "paused across processes"


def pause_in_a_file(path: str, until: int) -> int:
    """In a child process: open the file as any process would and pause its bucket."""
    bucket = SQLiteBucket.init_from_file(RATES, TABLE, path)
    try:
        return bucket.pause_until("k", until)
    finally:
        bucket.close()


def pause_shared(bucket: MultiprocessBucket, until: int) -> int:
    """In a child process: pause the bucket it was handed (pickled, or inherited by fork)."""
    return bucket.pause_until("k", until)


def decide_shared(bucket: MultiprocessBucket, stamp: int) -> tuple[int, int]:
    """In a child process: how the bucket it was handed decides an item stamped ``stamp``."""
    delay = bucket.reserve(RateItem("k", stamp), None)[0]
    return delay, bucket.paused_until("k")


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_a_pause_set_in_another_process_holds_back_this_one_on_a_file(start_method: str, tmp_path: Path) -> None:
    path = str(tmp_path / "shared.sqlite")
    bucket = SQLiteBucket.init_from_file(RATES, TABLE, path)
    try:
        assert bucket.put(RateItem("k", T0))  # open and used here before the child pauses it
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context(start_method)) as pool:
            assert pool.submit(pause_in_a_file, path, P).result(timeout=60) == P
            assert pool.submit(pause_in_a_file, path, P - 1000).result(timeout=60) == P
        assert bucket.reserve(RateItem("k", T0 + 1), None) == (P - T0 - 1, RATES[0], (2,))  # paused, with room
        assert bucket.reserve(RateItem("k", T0 + 1), P - T0) == (P - T0 - 1, None)
        assert bucket.paused_until("k") == P
    finally:
        bucket.close()


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_a_multiprocess_bucket_shares_its_pause_both_ways(start_method: str) -> None:
    bucket = MultiprocessBucket.init(RATES)
    try:
        assert bucket.put(RateItem("k", T0))
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context(start_method)) as pool:
            assert pool.submit(pause_shared, bucket, P).result(timeout=60) == P
            assert bucket.reserve(RateItem("k", T0 + 1), None) == (P - T0 - 1, RATES[0], (2,))  # paused, with room
            assert bucket.pause_until("k", P + 10) == P + 10
            assert pool.submit(decide_shared, bucket, T0 + 2).result(timeout=60) == (P + 8 - T0, P + 10)
        assert bucket.count() == 1
    finally:
        bucket.close()
