"""``per_key``: every name its own limit, in memory or in a shared backend, and idle names cost nothing."""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any

import pytest

from pyrate_limiter import (
    AsyncKeyedBucket,
    AsyncLimiter,
    AsyncMonotonicClock,
    AsyncPostgresBucket,
    AsyncRedisBucket,
    Rate,
    RateItem,
)
from pyrate_limiter._concurrency import AsyncTaskGroup, aresolve, asleep
from tests.realtime import NS_PER_MS, Call, realtime_problems
from tests.redis_clients import close_client, redis_client

from ..fake_clock import T0, FakeClock
from .bucket_kinds import POSTGRES_TABLE, close_postgres_pool, open_postgres_pool

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from pyrate_limiter import AsyncAbstractBucket

I = 1000  # noqa: E741 - the interval, named as in the rule


def tiers(name: str) -> list[Rate]:
    return [Rate(3, I)] if name.startswith("paid-") else [Rate(1, I)]


async def test_every_name_has_its_own_limit_and_tiers_pick_the_rates() -> None:
    limiter = AsyncLimiter.per_key(tiers, clock=FakeClock(T0), raise_when_fail=False)
    assert [await limiter.try_acquire("free-a") for _ in range(2)] == [True, False]
    assert [await limiter.try_acquire("paid-b") for _ in range(4)] == [True, True, True, False]
    assert await limiter.try_acquire("free-c")  # another name: untouched by the others


async def test_idle_names_are_dropped_and_come_back_as_fresh() -> None:
    clock = FakeClock(T0)
    limiter = AsyncLimiter.per_key([Rate(1, I)], clock=clock, raise_when_fail=False)
    (bucket,) = limiter.buckets()
    assert isinstance(bucket, AsyncKeyedBucket)
    for n in range(1000):
        assert await limiter.try_acquire(f"user-{n}")
    assert bucket.keys() == 1000
    assert await bucket.count() == 1000
    assert await bucket.leak(T0 + I) == 0  # still counting at T0 + I: kept
    assert bucket.keys() == 1000
    assert not await limiter.try_acquire("user-7")
    clock.advance(I + 1)
    assert await bucket.leak(clock.now()) == 1000
    assert bucket.keys() == 0  # memory follows the names that still count
    assert await limiter.try_acquire("user-7")  # decided like a fresh log, as it should be
    assert not await limiter.try_acquire("user-7")


async def test_the_keyed_bucket_answers_for_all_its_names() -> None:
    bucket = AsyncKeyedBucket([Rate(2, I)])
    for name, stamp in (("a", T0), ("b", T0 + 1), ("a", T0 + 2)):
        assert await bucket.put(RateItem(name, stamp))
    assert not await bucket.put(RateItem("a", T0 + 3))
    assert await bucket.waiting(RateItem("a", T0 + 3)) == I - 2
    assert await bucket.waiting(RateItem("new", T0 + 3)) == 0
    assert bucket.keys() == 2  # waiting never makes a log
    assert await bucket.count() == 3
    newest = [await bucket.peek(i) for i in range(4)]
    assert [(unit.name, unit.timestamp) if unit else None for unit in newest] == [
        ("a", T0 + 2),
        ("b", T0 + 1),
        ("a", T0),
        None,
    ]
    await bucket.release(RateItem("a", T0 + 2))
    assert await bucket.count() == 2
    await bucket.flush()
    assert bucket.keys() == 0


@pytest.fixture
async def shared_backend(
    request: pytest.FixtureRequest, native_async_driver: bool
) -> AsyncIterator[Callable[[str, list[Rate]], AsyncAbstractBucket]]:
    """``bucket_for`` over the test's Redis server, and over its PostgreSQL server (``None``: in memory)."""
    prefix = f"per-key-{uuid.uuid4().hex}-"
    if request.param == "memory":
        yield None  # type: ignore[misc]
    elif request.param == "redis":
        client = redis_client(request.getfixturevalue("redis_url"), native_async_driver)
        yield lambda name, rates: AsyncRedisBucket(rates, client, prefix + name)
        await aresolve(close_client(client))
    else:
        pool = await open_postgres_pool(request)
        yield lambda name, rates: AsyncPostgresBucket(pool, POSTGRES_TABLE, rates, key=prefix + name)
        await close_postgres_pool(pool)


@pytest.mark.parametrize("shared_backend", ["redis", "postgres"], indirect=True)
async def test_bucket_for_keeps_each_name_in_the_shared_backend_and_forgets_idle_objects(
    shared_backend: Callable[[str, list[Rate]], AsyncAbstractBucket],
) -> None:
    clock = FakeClock(T0)
    limiter = AsyncLimiter.per_key(tiers, shared_backend, clock=clock, raise_when_fail=False)
    assert [await limiter.try_acquire("free-a") for _ in range(2)] == [True, False]
    assert [await limiter.try_acquire("paid-b") for _ in range(4)] == [True, True, True, False]
    assert len(limiter.buckets()) == 2
    # A second limiter over the same backend shares the names' state: it lives there, not here.
    other = AsyncLimiter.per_key(tiers, shared_backend, clock=clock, raise_when_fail=False)
    assert not await other.try_acquire("free-a")
    factory: Any = limiter.bucket_factory
    clock.advance(I)
    await factory._leak_all()
    assert len(limiter.buckets()) == 2  # still counting at T0 + I
    clock.advance(1)
    await factory._leak_all()
    assert limiter.buckets() == []  # forgotten once idle for the longest interval
    assert await limiter.try_acquire("free-a")  # a new object, over the same (now empty) window
    assert not await other.try_acquire("free-a")  # which the other limiter sees too
    for bucket in limiter.buckets():
        await bucket.flush()


@pytest.mark.parametrize("shared_backend", ["memory", "redis", "postgres"], indirect=True)
async def test_per_key_holds_each_names_limit_in_real_time(
    shared_backend: Callable[[str, list[Rate]], AsyncAbstractBucket] | None,
) -> None:
    # On four names at once, two workers polling and one waiting on each; each name's admissions
    # are checked by the monotonic readings around the calls alone.
    rate = Rate(5, 100)
    limiter = AsyncLimiter.per_key([rate], shared_backend, clock=AsyncMonotonicClock(), raise_when_fail=False)
    calls: dict[str, list[Call]] = {f"key-{k}": [] for k in range(4)}
    until = time.monotonic_ns() + 450 * NS_PER_MS

    async def poll(name: str, worker: int, max_delay: int | None) -> None:
        n = 0
        while time.monotonic_ns() < until:
            before = time.monotonic_ns()
            admitted = await limiter.try_acquire(name, max_delay=max_delay)
            after = time.monotonic_ns()
            stamp = before // NS_PER_MS if admitted else None  # a waiter's is later: this bound is weaker
            calls[name].append(Call(f"{name}-{worker}-{n}", 1, before, after, admitted, stamp, stamp))
            n += 1
            await asleep(0)

    async with limiter, AsyncTaskGroup() as tasks:
        for name in calls:
            for worker, max_delay in enumerate([None, None, 300]):
                tasks.start_soon(poll, name, worker, max_delay)
    for name, made in calls.items():
        assert not realtime_problems(made, [rate]), name
        assert sum(call.admitted for call in made) > rate.limit  # windows were crossed
        assert not all(call.admitted for call in made)  # and the limit was met
