"""v3's ``RedisBucket.init``: one spelling for sync and async clients, single node or cluster."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import pytest
import redis
import redis.asyncio
import redis.asyncio.cluster
from redis.backoff import NoBackoff
from redis.retry import Retry

from pyrate_limiter import (
    AsyncLimiter,
    AsyncRedisBucket,
    BackendError,
    BucketFullException,
    Duration,
    Limiter,
    Rate,
    RedisBucket,
)

if TYPE_CHECKING:
    from tests.servers import RedisClusterHandle

RATES = [Rate(2, Duration.MINUTE)]


def key() -> str:
    return f"compat-{uuid.uuid4().hex}"


def test_init_with_a_sync_client_gives_the_sync_bucket(redis_url: str) -> None:
    with redis.Redis.from_url(redis_url) as client:
        bucket = RedisBucket.init(RATES, client, key())
        assert type(bucket) is RedisBucket
        limiter = Limiter(bucket)
        assert limiter.try_acquire("k")
        assert limiter.try_acquire("k")
        with pytest.raises(BucketFullException):
            limiter.try_acquire("k")


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_init_with_an_async_client_gives_the_async_bucket(redis_url: str) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        bucket = await RedisBucket.init(RATES, client, key())
        assert type(bucket) is AsyncRedisBucket
        limiter = Limiter(bucket)  # v3: the same Limiter, awaited
        assert isinstance(limiter, AsyncLimiter)
        assert await limiter.try_acquire("k")
        assert await limiter.try_acquire("k")
        with pytest.raises(BucketFullException):
            await limiter.try_acquire("k")
    finally:
        await client.aclose()


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_init_with_an_async_cluster_client_gives_the_async_bucket(
    redis_cluster_handle: RedisClusterHandle,
) -> None:
    host, port = redis_cluster_handle.nodes[0]
    client = redis.asyncio.cluster.RedisCluster(host=host, port=port)
    try:
        bucket = await RedisBucket.init(RATES, client, key())
        assert type(bucket) is AsyncRedisBucket
        limiter = AsyncLimiter(bucket)
        assert await limiter.try_acquire("k", weight=2)
        with pytest.raises(BucketFullException):
            await limiter.try_acquire("k")
    finally:
        await client.aclose()


def test_constructing_the_sync_bucket_with_an_async_client_is_refused(redis_url: str) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    with pytest.raises(TypeError, match="async client"):
        RedisBucket(RATES, client, key())  # type: ignore[arg-type]


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_the_async_bucket_runs_a_sync_client_under_trio(redis_url: str) -> None:
    with redis.Redis.from_url(redis_url) as client:
        limiter = AsyncLimiter(await AsyncRedisBucket.init(RATES, client, key()))
        assert await limiter.try_acquire("k")
        assert await limiter.try_acquire("k")
        with pytest.raises(BucketFullException):
            await limiter.try_acquire("k")


def test_init_fails_at_once_when_redis_is_unreachable() -> None:
    client = redis.Redis(port=1, retry=Retry(NoBackoff(), 0))
    with client, pytest.raises(BackendError, match="backend of RedisBucket"):
        RedisBucket.init(RATES, client, key())
