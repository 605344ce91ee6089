"""The promise in real time across processes: worker processes sharing one bucket (a
``MultiprocessBucket``, or an SQLite file each opens itself) never get more than a rate allows
into one real window. Each process records its calls as ``tests/_sync/recording.py`` does and
returns them; the parent runs the checker of ``tests/realtime.py`` over them all."""

from __future__ import annotations

import multiprocessing
import os
import time
from typing import TYPE_CHECKING

import pytest

from pyrate_limiter import MultiprocessBucket, Rate, SQLiteBucket
from tests._sync.recording import (
    BURSTS_IN_A_MS,
    LATE_IN_A_MS,
    burst,
    burst_shape,
    hammer,
    late_start,
    read_units,
    recording_limiter,
)
from tests.realtime import backend_problems, realtime_problems

if TYPE_CHECKING:
    from collections.abc import Iterator
    from multiprocessing.pool import Pool
    from pathlib import Path

    from tests.realtime import Call

LONG = os.environ.get("PYRATE_REALTIME_LONG") == "1"
SECONDS = 5.0 if LONG else 0.45
RATES = [Rate(100, 1000)] if LONG else [Rate(5, 100)]
WAIT = 10 * RATES[-1].interval  # a max_delay no wait reaches
PROCESSES = 4
TABLE = "realtime"


@pytest.fixture(scope="module")
def pool() -> Iterator[Pool]:
    """Worker processes, spawned once (and warmed, so that they all start on time)."""
    with multiprocessing.get_context("spawn").Pool(PROCESSES) as workers:
        workers.map(warm, range(PROCESSES), chunksize=1)
        yield workers


def warm(_: int) -> int:
    time.sleep(0.05)  # holds this process, so that each of the others gets a task too
    return os.getpid()


def work(shared: SQLiteBucket | str, prefix: str, start: int, until: int, waiting: bool) -> list[Call]:
    """In a worker process: one caller over the shared bucket from ``start`` to ``until``.

    :param shared: the ``MultiprocessBucket`` (it travels by its file's path), or an SQLite
        file to open here.
    :param waiting: burst with ``max_delay`` (see ``burst``) instead of polling.
    """
    bucket = SQLiteBucket.init_from_file(RATES, TABLE, shared) if isinstance(shared, str) else shared
    limiter, recording = recording_limiter(bucket)
    calls: list[Call] = []
    try:
        with limiter:
            if waiting:
                every, calls_each = burst_shape(RATES, PROCESSES)
                burst(limiter, recording, prefix, start, until, every, calls_each, WAIT, calls)
            else:
                hammer(limiter, recording, prefix, start, until, [1], None, calls)
    finally:
        bucket.close()
    return calls


def run_processes(pool: Pool, kind: str, tmp_path: Path, waiting: bool) -> None:
    if kind == "multiprocess":
        bucket: SQLiteBucket = MultiprocessBucket.init(RATES)
        shared: SQLiteBucket | str = bucket
    else:
        shared = str(tmp_path / "shared.sqlite")
        bucket = SQLiteBucket.init_from_file(RATES, TABLE, shared)
    try:
        start = late_start(BURSTS_IN_A_MS if waiting else LATE_IN_A_MS, ahead=50)  # time to hand out the tasks
        until = start + int(SECONDS * 1e9)
        tasks = [(shared, f"p{n}", start, until, waiting) for n in range(PROCESSES)]
        calls = [call for calls in pool.starmap(work, tasks, chunksize=1) for call in calls]
        problems = realtime_problems(calls, RATES)
        problems += backend_problems(calls, read_units(bucket), RATES[-1].interval)
        assert not problems, "\n".join(problems)
        assert sum(call.weight for call in calls if call.admitted) > RATES[0].limit  # windows were crossed
        assert len({call.name.split("-")[0] for call in calls if call.admitted}) > 1  # the limit was shared
    finally:
        bucket.close()


@pytest.mark.parametrize("kind", ["multiprocess", "sqlite_file"])
def test_polling_processes_never_get_more_than_the_limit_into_one_real_window(
    pool: Pool, kind: str, tmp_path: Path
) -> None:
    run_processes(pool, kind, tmp_path, waiting=False)


@pytest.mark.parametrize("kind", ["multiprocess", "sqlite_file"])
def test_bursts_of_waiting_processes_never_get_more_than_the_limit_into_one_real_window(
    pool: Pool, kind: str, tmp_path: Path
) -> None:
    run_processes(pool, kind, tmp_path, waiting=True)
