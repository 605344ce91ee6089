"""fork() while other threads are deciding: the child gets a working limiter, never a held lock."""

from __future__ import annotations

import os
import threading

import pytest

from pyrate_limiter import Duration, Limiter, Rate
from tests.forking import exit_codes

CHILDREN = 40
PATIENCE = 10.0  # seconds for every child to finish one acquire: a hung one never does


# Python 3.12+ warns that forking a threaded process may deadlock: that is what this test rules out.
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_a_child_forked_during_acquires_can_acquire_at_once() -> None:
    limiter = Limiter(Rate(10**9, Duration.HOUR))
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            limiter.try_acquire("k")

    threads = [threading.Thread(target=hammer, daemon=True) for _ in range(2)]
    for thread in threads:
        thread.start()
    children = []
    try:
        for _ in range(CHILDREN):
            pid = os.fork()
            if pid == 0:  # the child: one acquire on the inherited limiter, then out
                os._exit(0 if limiter.try_acquire("k") else 1)
            children.append(pid)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert set(exit_codes(children, PATIENCE).values()) == {0}
