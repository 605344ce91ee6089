"""Faults under load, judged in real time: the server drops every connection again and again while
workers acquire, and still no real window admits more than the limit, and the backend holds
exactly the items admitted (none lost, none doubled, none of a refused call)."""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any

import redis

from pyrate_limiter import AsyncRedisBucket, Rate
from pyrate_limiter._concurrency import AsyncTaskGroup, aresolve, arun_blocking, asleep
from tests.realtime import backend_problems, realtime_problems
from tests.redis_clients import close_client, redis_client

from .recording import run_workers

if TYPE_CHECKING:
    from collections.abc import Callable

RATES = [Rate(5, 100), Rate(8, 300)]
SECONDS = 0.9
KILL_EVERY = 0.04  # s: every connection of every client but the killer's, some 20 times a run


async def killing(kill: Callable[[], Any], until: float, kills: list[int]) -> None:
    """Call ``kill`` every ``KILL_EVERY`` seconds until ``until`` (monotonic)."""
    while time.monotonic() < until:
        await asleep(KILL_EVERY)
        kills.append(int(await arun_blocking(kill)))


async def test_connections_killed_under_load_lose_and_double_nothing(redis_url: str, native_async_driver: bool) -> None:
    # redis-py's own retries (its default client), and ours for the async client: a call whose
    # reply was lost is sent again, and its call key makes the server answer it without a second record.
    client = redis_client(redis_url, native_async_driver)
    admin = redis.Redis.from_url(redis_url)
    bucket = AsyncRedisBucket(RATES, client, f"realtime-faults-{uuid.uuid4().hex}")
    kills: list[int] = []
    try:
        async with AsyncTaskGroup() as tasks:
            until = time.monotonic() + SECONDS + 0.2
            tasks.start_soon(killing, lambda: admin.client_kill_filter(_type="normal", skipme=True), until, kills)
            calls, units = await run_workers(bucket, SECONDS, [1, 2, 1], [None, 0, 200, 1000])
        assert sum(kills) > 0, "no connection was ever killed: the test proved nothing"
        problems = realtime_problems(calls, RATES) + backend_problems(calls, units, max(r.interval for r in RATES))
        assert not problems, "\n".join(problems)
        assert sum(call.weight for call in calls if call.admitted) > max(rate.limit for rate in RATES)
    finally:
        await bucket.flush()
        await aresolve(close_client(client))
        admin.close()
