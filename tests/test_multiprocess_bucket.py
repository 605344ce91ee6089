"""``MultiprocessBucket`` under a pool of 4 worker processes, used as v3.9 code uses it: the limit is
exact across processes and no window ever holds more than a rate allows."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import sqlite3
import time
from concurrent.futures import ProcessPoolExecutor
from functools import partial

import pytest

from pyrate_limiter import (
    BackendError,
    Duration,
    Limiter,
    MonotonicClock,
    MultiprocessBucket,
    Rate,
    RateItem,
    limiter_factory,
)
from pyrate_limiter._rate import Verdict, recorded_at

from .windows import assert_windows_hold

WORKERS = 4
RATES = [Rate(5, 100), Rate(12, 400)]


class RecordingBucket(MultiprocessBucket):
    """Notes where each admitted item was recorded (its time, after any wait), in this process."""

    recorded: list[tuple[int, int]] = []  # noqa: RUF012 - per process, read by ``task``

    def reserve(self, item: RateItem, max_delay: int | None) -> Verdict:
        verdict = super().reserve(item, max_delay)
        if verdict[1] is None:
            RecordingBucket.recorded.append((recorded_at(item, verdict), item.weight))
        return verdict


def acquire(name: str) -> bool:
    """A pool task: one acquire through the worker's global limiter."""
    assert limiter_factory.LIMITER is not None
    return bool(limiter_factory.LIMITER.try_acquire(name))


def acquire_and_report(weight: int) -> tuple[int, list[tuple[int, int]]]:
    """A pool task: one acquire that may wait; return the process and what it recorded so far."""
    limiter = limiter_factory.LIMITER
    assert isinstance(limiter, Limiter)
    assert limiter.try_acquire("k", weight)
    return os.getpid(), list(RecordingBucket.recorded)


def init_like_v3_example(bucket: MultiprocessBucket) -> None:
    """The initializer of v3.9's multiprocessing example: a monotonic clock and its lock line."""
    limiter = Limiter(bucket, raise_when_fail=False, clock=MonotonicClock(), max_delay=Duration.DAY)
    limiter.lock = bucket.mp_lock  # type: ignore[attr-defined]
    limiter_factory.LIMITER = limiter


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_pool_of_4_admits_exactly_the_limit(start_method: str) -> None:
    bucket = MultiprocessBucket.init([Rate(10, Duration.MINUTE)])
    try:
        initializer = partial(limiter_factory.init_global_limiter, bucket, max_delay=None)
        context = multiprocessing.get_context(start_method)
        with ProcessPoolExecutor(WORKERS, mp_context=context, initializer=initializer) as pool:
            results = list(pool.map(acquire, ["k"] * 60))
        assert results.count(True) == 10
        assert bucket.count() == 10
    finally:
        bucket.close()


# Spawned workers (the bucket pickled by path) are covered above; here fork (inherited, reopened).
@pytest.mark.parametrize("initializer", ["init_global_limiter", "v3_example"])
def test_pool_of_4_waiting_never_exceeds_any_window(initializer: str) -> None:
    bucket = RecordingBucket.init(RATES)
    try:
        init = (
            partial(limiter_factory.init_global_limiter, bucket)
            if initializer == "init_global_limiter"
            else partial(init_like_v3_example, bucket)
        )
        context = multiprocessing.get_context("fork")
        weights = [1, 2, 1, 3] * 8
        with ProcessPoolExecutor(WORKERS, mp_context=context, initializer=init) as pool:
            reports = list(pool.map(acquire_and_report, weights))
        recorded: dict[tuple[int, int], tuple[int, int]] = {}
        for pid, items in reports:  # each report holds its process's list so far
            for index, entry in enumerate(items):
                recorded[(pid, index)] = entry
        admitted = sorted(recorded.values())
        assert sum(weight for _, weight in admitted) == sum(weights)
        assert len({pid for pid, _ in reports}) > 1  # the limit was shared, not per process
        assert_windows_hold(admitted, RATES)
    finally:
        bucket.close()


def test_a_pickled_bucket_shares_the_state_and_the_owner_removes_the_file() -> None:
    bucket = MultiprocessBucket.init([Rate(2, Duration.MINUTE)])
    twin = pickle.loads(pickle.dumps(bucket))
    now = int(time.time() * 1000)
    assert bucket.put(RateItem("k", now))
    assert twin.put(RateItem("k", now))
    assert not bucket.put(RateItem("k", now))
    assert bucket.failing_rate == Rate(2, Duration.MINUTE)
    assert twin.count() == 2
    assert bucket.limiter_lock() is None
    with bucket.mp_lock:  # v3 code may hold it: a no-op here
        assert bucket.mp_lock.acquire(timeout=0)
    bucket.mp_lock.release()
    twin.close()
    assert os.path.exists(bucket.path)
    bucket.close()
    assert not os.path.exists(bucket.path)
    with pytest.raises(FileNotFoundError, match="owning process closed it"):
        pickle.loads(pickle.dumps(bucket))


def test_a_twin_stops_once_the_owner_removed_the_file() -> None:
    bucket = MultiprocessBucket.init([Rate(2, Duration.MINUTE)])
    twin = pickle.loads(pickle.dumps(bucket))
    try:
        now = int(time.time() * 1000)
        assert twin.put(RateItem("k", now))
        bucket.close()  # the owner goes first: its twins must not go on in the unlinked file
        with pytest.raises(BackendError, match="was deleted while in use"):
            twin.leak(now)
    finally:
        twin.close()


def test_a_bucket_is_never_reopened_over_another_file_than_its_owners() -> None:
    bucket = MultiprocessBucket.init([Rate(2, Duration.MINUTE)])
    try:
        other = bucket.path + ".other"
        with contextlib.closing(sqlite3.connect(other)) as conn:
            conn.execute("CREATE TABLE bucket (cum INTEGER PRIMARY KEY, ts INTEGER, weight INTEGER, name TEXT)")
            conn.commit()
        os.replace(other, bucket.path)
        with pytest.raises(BackendError, match="replaced by another file since its owning process opened it"):
            pickle.loads(pickle.dumps(bucket))
        with pytest.raises(BackendError, match="was replaced by another file while in use"):
            bucket.leak(int(time.time() * 1000))
    finally:
        bucket.close()
