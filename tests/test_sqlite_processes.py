"""Processes sharing one SQLite file never admit more than its rates allow in any window, and
what they admitted outlives them."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import random
import sqlite3
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from typing import TYPE_CHECKING, Any

from pyrate_limiter import Rate, RateItem, SQLiteBucket
from tests.windows import assert_windows_hold

if TYPE_CHECKING:
    from pathlib import Path

PROCESSES = 4
THREADS = 3
RATES = [Rate(10, 100), Rate(40, 1000)]
TABLE = 'shared "bucket"; --'


def hammer(path: str, ready: Any, seconds: float) -> tuple[list[tuple[int, int]], int]:
    """In a child process: threads put items (some may wait 50 ms); return the admitted and the tries."""
    # Every process waits for the others, however slowly they were spawned, then all start at once.
    ready.wait(timeout=120)
    start_at = time.time() + 0.5
    # All at once on a new file: each process creates the table and turns the file to WAL.
    bucket = SQLiteBucket.init_from_file(RATES, db_path=path, table=TABLE)
    admitted: list[tuple[int, int]] = []
    tries = [0]
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run(seed: int) -> None:
        try:
            put_until_done(seed)
        except BaseException as error:
            errors.append(error)

    def put_until_done(seed: int) -> None:
        rng = random.Random(seed)
        time.sleep(max(0.0, start_at - time.time()))
        while time.time() < start_at + seconds:
            # Taken before the transaction: items reach the file slightly out of timestamp order.
            item = RateItem("k", int(time.time() * 1000), rng.choice([1, 1, 2, 3]))
            # Half the threads may wait 50 ms; the others decide as put() does (no wait), and
            # learn where the item was recorded: later than its stamp if a trim overtook it.
            delay, rate = bucket.reserve(item, 50 if seed % 2 else None)
            at = item.timestamp + delay
            with lock:
                tries[0] += 1
                if rate is None:
                    admitted.append((at, item.weight))
            if rate is None:
                # Read the clock once: a second reading could already be past `at`.
                time.sleep(max(0.0, at / 1000 - time.time()))

    threads = [threading.Thread(target=run, args=(os.getpid() * 100 + i,)) for i in range(THREADS)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        bucket.close()
    if errors:
        raise errors[0]
    return admitted, tries[0]


def test_processes_sharing_a_file_never_exceed_its_rates(tmp_path: Path) -> None:
    path = str(tmp_path / "shared ü.sqlite")
    seconds = 1.5
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, ProcessPoolExecutor(PROCESSES, mp_context=context) as pool:
        ready = manager.Barrier(PROCESSES)
        futures = [pool.submit(hammer, path, ready, seconds) for _ in range(PROCESSES)]
        results = [future.result(timeout=180) for future in futures]
    admitted = sorted(entry for entries, _ in results for entry in entries)
    tries = sum(count for _, count in results)
    assert tries > 4 * len(admitted) > 0, "the bucket was never under pressure"
    for rate in RATES:
        assert_windows_hold(admitted, [rate])
    # One row per admitted item, none lost, none extra: past the trimmed ones, the file holds
    # exactly what the processes saw admitted.
    with contextlib.closing(sqlite3.connect(path)) as conn:
        rows = sorted(conn.execute('SELECT ts, weight FROM "shared ""bucket""; --" WHERE weight > 0').fetchall())
    assert rows
    assert rows == [entry for entry in admitted if entry[0] >= rows[0][0]]


def fill(path: str) -> tuple[bool, int]:
    bucket = SQLiteBucket.init_from_file([Rate(3, 60_000)], db_path=path, table="restart")
    try:
        now = int(time.time() * 1000)
        admitted = [bucket.put(RateItem("k", now + i)) for i in range(4)]
        return admitted == [True, True, True, False], bucket.count()
    finally:
        bucket.close()


def test_a_restarted_process_sees_what_an_earlier_one_admitted(tmp_path: Path) -> None:
    path = str(tmp_path / "restart.sqlite")
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=context) as pool:
        assert pool.submit(fill, path).result(timeout=60) == (True, 3)
    with ProcessPoolExecutor(1, mp_context=context) as pool:
        # The second program finds the bucket full: its four puts are all refused.
        assert pool.submit(fill, path).result(timeout=60) == (False, 3)
