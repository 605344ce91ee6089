"""fork() while other threads are inside SQLite decisions: the child decides at once, into the shared file,
on a connection of its own where the bucket opened the file."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from typing import TYPE_CHECKING

import pytest

from pyrate_limiter import Duration, Limiter, MultiprocessBucket, Rate, SQLiteBucket
from tests.forking import exit_codes

if TYPE_CHECKING:
    from pathlib import Path

CHILDREN = 40
PATIENCE = 20.0  # seconds for every child to finish one acquire: a hung one never does
RATES = [Rate(10**9, Duration.HOUR)]


def open_bucket(kind: str, tmp_path: Path) -> tuple[SQLiteBucket, str, str]:
    """A bucket of ``kind``, its file and its table."""
    if kind == "multiprocess":
        shared = MultiprocessBucket.init(RATES)
        return shared, shared.path, "bucket"
    path = str(tmp_path / "forked.sqlite")
    if kind == "file":
        return SQLiteBucket.init_from_file(RATES, "forked", path), path, "forked"
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    return SQLiteBucket(RATES, conn, "forked"), path, "forked"


# Python 3.12+ warns that forking a threaded process may deadlock: that is what this test rules out.
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("kind", ["file", "given connection", "multiprocess"])
def test_a_child_forked_during_decisions_decides_at_once_into_the_shared_file(kind: str, tmp_path: Path) -> None:
    bucket, path, table = open_bucket(kind, tmp_path)
    limiter = Limiter(bucket)
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            limiter.try_acquire("parent")

    threads = [threading.Thread(target=hammer, daemon=True) for _ in range(2)]
    for thread in threads:
        thread.start()
    children = []
    try:
        time.sleep(0.05)  # both threads are deciding
        for _ in range(CHILDREN):
            pid = os.fork()
            if pid == 0:  # the child: one acquire on the inherited bucket, then out
                try:
                    inherited = bucket.conn
                    admitted = limiter.try_acquire("child")
                    # A connection the bucket opened is opened afresh; a given one is the caller's.
                    fresh = bucket.conn is not inherited
                    os._exit(0 if admitted and fresh == (kind != "given connection") else 1)
                except BaseException:
                    os._exit(2)
            children.append(pid)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    try:
        assert set(exit_codes(children, PATIENCE).values()) == {0}
        check = sqlite3.connect(path)
        quoted = '"' + table + '"'
        assert check.execute(f"SELECT count(*) FROM {quoted} WHERE name = 'child'").fetchone() == (CHILDREN,)
        check.close()
    finally:
        limiter.close()
        bucket.close()
        if kind == "given connection":
            bucket.conn.close()
