"""fork() while other threads are deciding: the child gets a working limiter, never a held lock."""

from __future__ import annotations

import os
import threading
import time

import pytest

from pyrate_limiter import Duration, Limiter, Rate

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
    codes: dict[int, int] = {}
    deadline = time.monotonic() + PATIENCE
    while len(codes) < len(children) and time.monotonic() < deadline:
        for pid in children:
            if pid not in codes:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    codes[pid] = os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    hung = [pid for pid in children if pid not in codes]
    for pid in hung:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    assert not hung, f"{len(hung)} of {CHILDREN} children hung on an inherited lock"
    assert set(codes.values()) == {0}
