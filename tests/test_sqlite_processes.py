"""Processes sharing one SQLite file never admit more than its rates allow in any window, what
they admitted outlives them, and a file deleted under them stops them instead of splitting the limit."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import random
import sqlite3
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from typing import TYPE_CHECKING, Any

import aiosqlite
import anyio.from_thread
import pytest

from pyrate_limiter import AsyncSQLiteBucket, BackendError, Duration, Rate, RateItem, SQLiteBucket
from pyrate_limiter._drivers.sqlite_file import CHECK_EVERY
from pyrate_limiter._rate import recorded_at
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
            try:
                verdict = bucket.reserve(item, 50 if seed % 2 else None)
            except BackendError as error:
                # One that may wait 50 ms waits no longer for the others' lock: under this much
                # contention it may give up, having recorded nothing.
                if seed % 2 == 0 or error.recorded is not False or "locked" not in str(error):
                    raise
                verdict = (0, RATES[0])
            rate = verdict[1]
            with lock:
                tries[0] += 1
                if rate is None:
                    at = recorded_at(item, verdict)
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


TURNS = Rate(10, Duration.MINUTE)


def take_turns(path: str, flavour: str, barrier: Any) -> tuple[list[int], int, str]:
    """In a child: admit 3 items, wait while the test deletes the file, then put until the bucket stops.

    Returns the stamps of what was admitted, how many puts followed the deletion, and the error
    that stopped them (empty if none did).
    """
    with contextlib.ExitStack() as stack:
        if flavour == "sync":
            bucket: Any = SQLiteBucket.init_from_file([TURNS], db_path=path)
            stack.callback(bucket.close)
            put = bucket.put
        else:  # the async twin, on its own event loop: owning its file on trio, given one on asyncio
            portal = stack.enter_context(anyio.from_thread.start_blocking_portal(flavour))
            if flavour == "trio":
                bucket = portal.call(partial(AsyncSQLiteBucket.init_from_file, [TURNS], db_path=path))
            else:
                conn = portal.call(_connect, path)
                stack.callback(portal.call, conn.close)
                bucket = AsyncSQLiteBucket([TURNS], conn)
            stack.callback(portal.call, bucket.aclose)
            put = partial(portal.call, bucket.put)
        admitted: list[int] = []

        def admit() -> bool:
            item = RateItem("k", int(time.time() * 1000))
            if put(item):
                admitted.append(item.timestamp)
                return True
            return False

        assert all(admit() for _ in range(3))
        barrier.wait(timeout=120)  # both processes admitted theirs: the test deletes the file
        barrier.wait(timeout=60)
        tries = 0
        try:
            while tries < 2 * CHECK_EVERY:
                tries += 1
                admit()
        except BackendError as error:
            return admitted, tries, str(error)
        return admitted, tries, ""


async def _connect(path: str) -> aiosqlite.Connection:
    return await aiosqlite.connect(path)


@pytest.mark.parametrize("flavour", ["sync", "asyncio", "trio"])
def test_processes_whose_file_is_deleted_stop_and_never_admit_beyond_the_limit(tmp_path: Path, flavour: str) -> None:
    path = str(tmp_path / "turns.sqlite")
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, ProcessPoolExecutor(2, mp_context=context) as pool:
        barrier = manager.Barrier(3)
        futures = [pool.submit(take_turns, path, flavour, barrier) for _ in range(2)]
        barrier.wait(timeout=120)
        os.remove(path)
        barrier.wait(timeout=60)
        results = [future.result(timeout=120) for future in futures]
    # Every admission of both processes, before and after the deletion, in one window.
    assert_windows_hold([(at, 1) for admitted, _, _ in results for at in admitted], [TURNS])
    for _, tries, error in results:
        assert f"{path!r} of SQLiteBucket (table 'rate_bucket') was deleted while in use" in error
        assert tries < CHECK_EVERY
