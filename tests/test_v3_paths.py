"""3.9's module paths, names and class checks, as code written against 3.9 uses them."""

from __future__ import annotations

import importlib

import pytest

import pyrate_limiter
from pyrate_limiter import (
    AbstractBucket,
    AbstractClock,
    AsyncInMemoryBucket,
    AsyncLimiter,
    BucketAsyncWrapper,
    BucketFactory,
    InMemoryBucket,
    Limiter,
    Rate,
    RedisBucket,
    TimeAsyncClock,
    limiter_factory,
)

# Every public name 3.9.0 defines in (or imports into) each of its modules.
PATHS_3_9 = {
    "pyrate_limiter.abstracts": [
        "AbstractBucket",
        "AbstractClock",
        "BucketAsyncWrapper",
        "BucketFactory",
        "Duration",
        "Leaker",
        "Rate",
        "RateItem",
    ],
    "pyrate_limiter.abstracts.bucket": [
        "AbstractBucket",
        "AbstractClock",
        "BucketFactory",
        "Leaker",
        "Rate",
        "RateItem",
    ],
    "pyrate_limiter.abstracts.clock": ["AbstractClock"],
    "pyrate_limiter.abstracts.rate": ["Duration", "Rate", "RateItem"],
    "pyrate_limiter.abstracts.wrappers": ["AbstractBucket", "BucketAsyncWrapper", "RateItem"],
    "pyrate_limiter.buckets": [
        "InMemoryBucket",
        "MultiprocessBucket",
        "PgQueries",
        "PostgresBucket",
        "RedisBucket",
        "SQLiteBucket",
        "SQLiteQueries",
    ],
    "pyrate_limiter.buckets.in_memory_bucket": [
        "AbstractBucket",
        "InMemoryBucket",
        "Rate",
        "RateItem",
        "binary_search",
    ],
    "pyrate_limiter.buckets.mp_bucket": ["MultiprocessBucket", "Rate", "RateItem"],
    "pyrate_limiter.buckets.postgres": ["AbstractBucket", "PostgresBucket", "Queries", "Rate", "RateItem"],
    "pyrate_limiter.buckets.redis_bucket": [
        "AbstractBucket",
        "LuaScript",
        "Rate",
        "RateItem",
        "RedisBucket",
        "id_generator",
    ],
    "pyrate_limiter.buckets.sqlite_bucket": ["AbstractBucket", "Queries", "Rate", "RateItem", "SQLiteBucket"],
    "pyrate_limiter.clocks": [
        "AbstractClock",
        "MonotonicClock",
        "PostgresClock",
        "SQLiteBucket",
        "SQLiteClock",
        "TimeAsyncClock",
        "TimeClock",
        "dedicated_sqlite_clock_connection",
    ],
    "pyrate_limiter.exceptions": ["BucketFullException", "LimiterDelayException", "Rate", "RateItem"],
    "pyrate_limiter.limiter": [
        "AbstractBucket",
        "AbstractClock",
        "BucketFactory",
        "BucketFullException",
        "DecoratorWrapper",
        "Duration",
        "InMemoryBucket",
        "ItemMapping",
        "Limiter",
        "LimiterDelayException",
        "Rate",
        "RateItem",
        "SingleBucketFactory",
        "TimeClock",
        "combined_lock",
    ],
    "pyrate_limiter.limiter_factory": [
        "LIMITER",
        "create_inmemory_limiter",
        "create_sqlite_bucket",
        "create_sqlite_limiter",
        "init_global_limiter",
    ],
    "pyrate_limiter.utils": [
        "Rate",
        "RateItem",
        "binary_search",
        "dedicated_sqlite_clock_connection",
        "id_generator",
        "validate_rate_list",
    ],
}


@pytest.mark.parametrize("path", sorted(PATHS_3_9))
def test_every_3_9_module_path_offers_its_names_as_the_package_does(path: str) -> None:
    module = importlib.import_module(path)
    for name in PATHS_3_9[path]:
        found = getattr(module, name)
        # The same object as at the top level, where the package has it: one class, two paths.
        alias = {"Queries": "PgQueries" if path.endswith("postgres") else "SQLiteQueries"}.get(name, name)
        if hasattr(pyrate_limiter, alias):
            assert found is getattr(pyrate_limiter, alias), (path, name)


def test_rate_reads_as_in_3_9() -> None:
    assert repr(Rate(5, 2000)) == "limit=5/2000"
    assert str(Rate(5, 2000)) == "limit=5/2.0s"


def test_what_the_3_x_api_hands_out_passes_the_3_x_class_checks() -> None:
    async_limiter = Limiter(BucketAsyncWrapper(InMemoryBucket([Rate(1, 1000)])))
    assert isinstance(async_limiter, AsyncLimiter)
    assert isinstance(async_limiter, Limiter)
    assert isinstance(async_limiter.bucket_factory, BucketFactory)
    wrapped = limiter_factory.create_inmemory_limiter(async_wrapper=True)
    assert isinstance(wrapped, Limiter)
    assert isinstance(wrapped.bucket_factory, BucketFactory)
    assert isinstance(limiter_factory.create_inmemory_limiter().bucket_factory, BucketFactory)
    for bucket in (
        InMemoryBucket([Rate(1, 10)]),
        AsyncInMemoryBucket([Rate(1, 10)]),
        BucketAsyncWrapper(InMemoryBucket([Rate(1, 10)])),
    ):
        assert isinstance(bucket, AbstractBucket)
    assert isinstance(TimeAsyncClock(), AbstractClock)
    assert not isinstance(object(), Limiter)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # redis.asyncio runs on asyncio only
async def test_redis_init_with_an_async_client_gives_a_redis_bucket(redis_url: str) -> None:
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        bucket = await RedisBucket.init([Rate(2, 1000)], client, "v3-paths-isinstance")
        assert isinstance(bucket, RedisBucket)
        assert isinstance(bucket, AbstractBucket)
        await bucket.flush()
    finally:
        await client.aclose()
