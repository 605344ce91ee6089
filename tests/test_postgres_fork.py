"""fork() while threads decide through a PostgreSQL bucket's pool: the child never touches the parent's
connections (psycopg_pool does nothing on fork), never hangs, and decides through a pool of its own."""

from __future__ import annotations

import os
import threading
import time

import pytest
from psycopg_pool import ConnectionPool

from pyrate_limiter import BackendError, Duration, PostgresBucket, Rate, RateItem
from tests.forking import exit_codes

CHILDREN = 20
PATIENCE = 20.0  # seconds for every child to finish: a hung one never does
TABLE = "pyrate fork"


def child(dsn: str, inherited: PostgresBucket) -> int:
    """In the forked child: the inherited bucket refuses at once; a new pool and bucket decide."""
    try:
        inherited.put(RateItem("k", int(time.time() * 1000)))
    except BackendError as error:
        if error.recorded is not False or "before a fork" not in str(error):
            return 2
    else:
        return 3
    pool = ConnectionPool(dsn, min_size=1, max_size=1, open=False)
    pool.open(wait=True, timeout=10)
    try:
        own = PostgresBucket(pool, TABLE, inherited.rates, key=inherited.key)
        return 0 if own.put(RateItem("k", int(time.time() * 1000))) else 4
    finally:
        pool.close()


# Python 3.12+ warns that forking a threaded process may deadlock: that is what this test rules out.
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_a_child_forked_during_decisions_leaves_the_parents_pool_alone(postgres_dsn: str) -> None:
    pool = ConnectionPool(postgres_dsn, min_size=4, max_size=4, open=False)
    pool.open(wait=True)
    bucket = PostgresBucket(pool, TABLE, [Rate(10**9, Duration.HOUR)], key=f"fork-{os.urandom(6).hex()}")
    bucket.count()  # the table exists before the threads start
    stop = threading.Event()
    admitted = [0]
    errors: list[BaseException] = []
    lock = threading.Lock()

    def hammer() -> None:
        while not stop.is_set():
            try:
                fitted = bucket.put(RateItem("k", int(time.time() * 1000)))
            except BaseException as error:  # the parent must never see one
                errors.append(error)
                return
            with lock:
                admitted[0] += fitted

    threads = [threading.Thread(target=hammer, daemon=True) for _ in range(3)]
    for thread in threads:
        thread.start()
    children = []
    try:
        for _ in range(CHILDREN):
            time.sleep(0.005)  # let the threads be mid-decision, holding connections and the pool's lock
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    code = child(postgres_dsn, bucket)
                finally:
                    os._exit(code)
            children.append(pid)
        codes = exit_codes(children, PATIENCE)
        # The parent's threads kept deciding through their connections while the children ran.
        time.sleep(0.05)
    finally:
        stop.set()
        for thread in threads:
            thread.join(PATIENCE)
    # A child reading or writing the parent's sockets leaves a parent thread waiting for a reply forever.
    assert not any(thread.is_alive() for thread in threads), "a parent thread hung"
    assert codes == dict.fromkeys(children, 0)
    assert errors == []
    pool.check()  # a connection a child had used or closed would be found broken here
    assert pool.get_stats().get("connections_lost", 0) == 0
    assert bucket.count() == admitted[0] + CHILDREN
    bucket.flush()
    pool.close()
