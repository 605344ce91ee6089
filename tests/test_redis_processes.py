"""Many processes sharing one Redis bucket key: exact windows, whole weights, first-in-first-out waiting."""

from __future__ import annotations

import multiprocessing
import random
import time
import uuid
from typing import Any

import pytest
import redis

from pyrate_limiter import Rate, RateItem, RedisBucket, TimeClock
from pyrate_limiter._rate import recorded_at
from tests.windows import assert_windows_hold

RATES = [Rate(8, 100), Rate(20, 500)]
PROCESSES = 4
SECONDS = 1.2


def hammer(url: str, key: str, server_time: bool, max_delay: int | None, seed: int, start: Any, out: Any) -> None:
    """Acquire in a loop for ``SECONDS``; report the refusals and ``[at, weight, decided]`` of each admission."""
    rng = random.Random(seed)
    clock = TimeClock()
    admitted, refused = [], 0
    with redis.Redis.from_url(url) as client:
        bucket = RedisBucket(RATES, client, key, server_time=server_time)
        start.wait(60)  # every worker is up before anyone acquires
        until = time.monotonic() + SECONDS
        while time.monotonic() < until:
            item = RateItem(f"p{seed}", clock.now(), rng.choice([1, 1, 2, 3]))
            verdict = bucket.reserve(item, max_delay)
            delay, rate = verdict[:2]
            if rate is None:
                at = recorded_at(item, verdict)
                admitted.append([at, item.weight, at - delay])
                time.sleep(delay / 1000)  # what the limiter does: the slot is ours from then on
            else:
                refused += 1
                time.sleep(rng.random() / 500)
    out.put((seed, admitted, refused))


def run_processes(url: str, key: str, server_time: bool, max_delay: int | None) -> list[tuple[Any, ...]]:
    """Run ``PROCESSES`` workers on one key; return each one's ``(seed, admitted, refused)``."""
    # spawn: the test process may hold threads, which fork would copy in an unknown state.
    context = multiprocessing.get_context("spawn")
    start, out = context.Barrier(PROCESSES), context.Queue()
    workers = [
        context.Process(target=hammer, args=(url, key, server_time, max_delay, seed, start, out))
        for seed in range(PROCESSES)
    ]
    for worker in workers:
        worker.start()
    try:
        return [out.get(timeout=90) for _ in workers]
    finally:
        for worker in workers:
            worker.join(10)
            if worker.is_alive():
                worker.kill()


@pytest.mark.parametrize("server_time", [False, True], ids=["client-clock", "server-clock"])
def test_processes_sharing_a_key_never_exceed_any_window(redis_url: str, server_time: bool) -> None:
    results = run_processes(redis_url, f"processes-{uuid.uuid4().hex}", server_time, None)
    admitted = [entry for _, entries, _ in results for entry in entries]
    assert_windows_hold(admitted, RATES)
    # The bucket was really full at times, and really admitting at others.
    assert sum(refused for _, _, refused in results) > 0
    assert sum(weight for _, weight, _ in admitted) >= RATES[-1].limit


def test_waiting_processes_queue_first_in_first_out(redis_url: str) -> None:
    results = run_processes(redis_url, f"processes-{uuid.uuid4().hex}", True, 2000)
    admitted = [entry for _, entries, _ in results for entry in entries]
    assert all(entries for _, entries, _ in results), "a waiting process was starved"
    assert not any(refused for _, _, refused in results)
    assert_windows_hold(admitted, RATES)
    # With the server's clock an item's stamp is the time of its decision: later decisions, later slots.
    by_decision = [at for at, _, _ in sorted(admitted, key=lambda entry: (entry[2], entry[0]))]
    assert by_decision == sorted(by_decision), "a later decision got an earlier slot"
    assert any(at > decided for at, _, decided in admitted), "nobody had to wait"
