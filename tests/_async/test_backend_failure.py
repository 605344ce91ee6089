"""``on_backend_error`` through a real outage: the Redis and PostgreSQL servers stopped mid-run.

One limiter lives through the outage and switches policy inside it: raise, admit (fail open),
refuse (fail closed). The log warns once when the outage starts and once when it ends; what was
admitted while failing open is never written to the backend, then or later.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

import pytest

from pyrate_limiter import AsyncLimiter, AsyncPostgresBucket, AsyncRedisBucket, BackendError, BucketFullException, Rate
from pyrate_limiter._concurrency import aresolve, arun_blocking, asleep
from tests.redis_clients import close_client, redis_client

from .bucket_kinds import POSTGRES_TABLE, close_postgres_pool, open_postgres_pool
from .test_hooks import Heard

if TYPE_CHECKING:
    from collections.abc import Callable

    from pyrate_limiter import AsyncAbstractBucket

RATES = [Rate(3, 60_000)]


async def live_through_an_outage(
    bucket: AsyncAbstractBucket, stop: Callable[[], None], start: Callable[[], None], caplog: pytest.LogCaptureFixture
) -> AsyncLimiter:
    heard = Heard()
    limiter = AsyncLimiter(bucket, raise_when_fail=False, hooks=[heard])
    assert await limiter.try_acquire("k")
    with caplog.at_level(logging.WARNING, logger="pyrate_limiter"):
        await arun_blocking(stop)
        try:
            with pytest.raises(BackendError):
                await limiter.try_acquire("k")  # the default: raise
            limiter.on_backend_error = "allow"
            assert await limiter.try_acquire("k", weight=3)  # admitted, though it would not fit
            reservation = await limiter.reserve("k")
            assert reservation is not None
            assert reservation.delay_ms == 0
            limiter.on_backend_error = "deny"
            assert not await limiter.try_acquire("k")
            limiter.raise_when_fail = True
            with pytest.raises(BucketFullException):
                await limiter.try_acquire("k")
        finally:
            await arun_blocking(start)
        limiter.on_backend_error = "raise"
        assert await until_answered(limiter)  # the same limiter, not a new one
    warnings = [r.getMessage() for r in caplog.records if r.name == "pyrate_limiter" and r.levelno == logging.WARNING]
    assert sum("backend failing" in message for message in warnings) == 1
    assert sum("backend answering again" in message for message in warnings) == 1
    policies = [detail for event, _, _, detail in heard.events if event == "backend_error"]
    assert policies[:5] == ["raise", "allow", "allow", "deny", "deny"]
    return limiter


async def until_answered(limiter: AsyncLimiter) -> bool:
    """The first acquire after a restart that reaches the server (connections may need replacing)."""
    deadline = time.monotonic() + 20
    while True:
        try:
            return await limiter.try_acquire("k")
        except BackendError:
            assert time.monotonic() < deadline, "the backend never answered again"
            await asleep(0.05)


async def test_redis_outage_under_each_policy(
    redis_handle: Any, redis_url: str, native_async_driver: bool, caplog: pytest.LogCaptureFixture
) -> None:
    client = redis_client(redis_url, native_async_driver, retries=1)
    try:
        bucket = AsyncRedisBucket(RATES, client, f"outage-{uuid.uuid4().hex}")
        await live_through_an_outage(bucket, redis_handle.stop, redis_handle.start, caplog)
        assert await bucket.count() == 1  # the server came back empty: only the last one is there
    finally:
        await aresolve(close_client(client))


async def test_postgres_outage_under_each_policy(
    request: pytest.FixtureRequest, postgres_handle: Any, caplog: pytest.LogCaptureFixture
) -> None:
    pool = await open_postgres_pool(request, check=True, timeout=0.5)
    try:
        bucket = AsyncPostgresBucket(pool, POSTGRES_TABLE, RATES, key=f"outage-{uuid.uuid4().hex}")
        await live_through_an_outage(bucket, postgres_handle.stop, postgres_handle.start, caplog)
        # The first and the last: nothing admitted while failing open reached the table.
        assert await bucket.count() == 2
        await bucket.flush()
    finally:
        await close_postgres_pool(pool)
