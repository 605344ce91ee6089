"""Processes and threads sharing one PostgreSQL bucket never admit more than its rates allow in any window."""

from __future__ import annotations

import multiprocessing
import os
import random
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from psycopg_pool import ConnectionPool

from pyrate_limiter import PostgresBucket, Rate, RateItem
from tests.postgres_rows import assert_recorded_exactly, finish_audit, marker, rows, start_audit

PROCESSES = 4
THREADS = 8
RATES = [Rate(10, 100), Rate(40, 1000)]
TABLE = 'pyrate processes "shared" %s'


def hammer(dsn: str, key: str, ready: Any, seconds: float) -> tuple[list[tuple[int, int]], int]:
    """In a child process: ``THREADS`` threads put items into one bucket; return the admitted and the tries."""
    admitted: list[tuple[int, int]] = []
    tries = [0]
    lock = threading.Lock()
    pool = ConnectionPool(dsn, min_size=THREADS, max_size=THREADS, open=False)
    pool.open(wait=True)
    try:
        bucket = PostgresBucket(pool, TABLE, RATES, key=key)
        bucket.count()  # the table exists before the clock starts
        ready.wait(60)  # every process is up: spawning takes longer than the traffic
        until = time.monotonic() + seconds

        def run(seed: int) -> None:
            rng = random.Random(seed)
            while time.monotonic() < until:
                # The timestamp is taken before the round trip: items reach the server slightly out of order.
                item = RateItem("k", int(time.time() * 1000), rng.choice([1, 1, 2, 3]))
                admitted_now = bucket.put(item)
                with lock:
                    tries[0] += 1
                    if admitted_now:
                        admitted.append((item.timestamp, item.weight))

        threads = [threading.Thread(target=run, args=(os.getpid() * 100 + i,)) for i in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        pool.close()
    return admitted, tries[0]


def test_processes_and_threads_sharing_a_bucket_never_exceed_its_rates(postgres_dsn: str) -> None:
    key = f"shared-{os.urandom(6).hex()}"
    with ConnectionPool(postgres_dsn, min_size=1, max_size=1) as pool:
        PostgresBucket(pool, TABLE, RATES, key=key).count()  # the table exists before the audit
    audit = start_audit(postgres_dsn, TABLE, key)
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, ProcessPoolExecutor(PROCESSES, mp_context=context) as executor:
        ready = manager.Barrier(PROCESSES)
        futures = [executor.submit(hammer, postgres_dsn, key, ready, 1.5) for _ in range(PROCESSES)]
        results = [future.result(timeout=120) for future in futures]
    recorded = finish_audit(postgres_dsn, TABLE, audit)
    admitted = sorted(entry for entries, _ in results for entry in entries)
    tries = sum(count for _, count in results)
    assert tries > 2 * len(admitted) > 0, "the bucket was never contended"
    # Items are recorded at their stamp, or later when a trim overtook them on their way.
    assert_recorded_exactly(admitted, recorded, rows(postgres_dsn, TABLE, key), marker(postgres_dsn, TABLE, key), RATES)
