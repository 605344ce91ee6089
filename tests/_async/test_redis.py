"""The Redis bucket beyond the conformance suite: outages, script cache loss, cost, TTL and server time."""

from __future__ import annotations

import random
import uuid
from typing import TYPE_CHECKING, Any

import pytest
import redis
from redis.crc import key_slot

from pyrate_limiter import (
    AsyncInMemoryBucket,
    AsyncLimiter,
    AsyncRedisBucket,
    BackendError,
    BucketFullException,
    Duration,
    LimiterHooks,
    Rate,
    RateItem,
)
from pyrate_limiter._concurrency import AsyncTaskGroup, aresolve, arun_blocking
from pyrate_limiter._drivers.redis import SHA
from pyrate_limiter._rate import recorded_at
from tests.redis_clients import close_client, redis_client

from ..windows import assert_windows_hold
from .bucket_kinds import MAKERS

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from tests.servers import RedisServer

T0 = 1_700_000_000_000


def new_key() -> str:
    # The server lives for the whole session and both variants run: every test gets its own key.
    return f"test-redis-{uuid.uuid4().hex}"


@pytest.fixture
async def client(redis_url: str, native_async_driver: bool) -> AsyncIterator[Any]:
    made = redis_client(redis_url, native_async_driver)
    yield made
    await aresolve(close_client(made))


@pytest.fixture
def admin(redis_url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_url, decode_responses=True) as made:
        yield made


async def command_calls(admin: redis.Redis) -> dict[str, int]:
    """Calls per command since the last reset, scripts' inner commands included."""
    stats: dict[str, Any] = await arun_blocking(admin.info, "commandstats")
    return {
        name: entry["calls"] for name, entry in stats.items() if not name.startswith(("cmdstat_info", "cmdstat_config"))
    }


async def test_matches_the_in_memory_reference_on_random_traffic(client: Any) -> None:
    rng = random.Random(20261129)
    rates = [Rate(5, 100), Rate(12, 1000)]
    ours, reference = AsyncRedisBucket(rates, client, new_key()), AsyncInMemoryBucket(rates)
    t = T0
    for step in range(500):
        t += rng.randint(0, 25)
        stamp = t - rng.choice([0, 0, 3, 15, 150])  # skewed clocks: items older than the newest entry
        # No weight 0: Redis keeps no entry for it, so its trim cannot move the floor.
        weight = rng.choice([1, 1, 1, 2, 3, 6])
        name = f"n{step % 3}"
        roll = rng.random()
        if roll < 0.6:
            max_delay = rng.choice([None, 0, 40, 300, 5000])
            item = RateItem(name, stamp, weight)
            got = await ours.reserve(item, max_delay)
            assert got == await reference.reserve(item, max_delay), step  # where recorded, too
            if got[1] is None and got[0] > 0 and rng.random() < 0.3:  # a cancelled waiter
                await ours.release(RateItem(name, recorded_at(item, got), weight))
                await reference.release(RateItem(name, recorded_at(item, got), weight))
        elif roll < 0.75:
            item = RateItem(name, stamp, weight)
            assert await ours.waiting(item) == await reference.waiting(item), step
        elif roll < 0.85:
            assert await ours.leak(stamp) == await reference.leak(stamp), step
        else:
            assert await ours.put(RateItem(name, stamp, weight)) == await reference.put(RateItem(name, stamp, weight))
            assert ours.failing_rate == reference.failing_rate
        assert await ours.count() == await reference.count(), step
        index = rng.randint(-1, await reference.count())
        mine, theirs = await ours.peek(index), await reference.peek(index)
        assert (mine and (mine.name, mine.timestamp)) == (theirs and (theirs.name, theirs.timestamp)), step


async def test_a_late_item_cannot_reach_behind_what_was_trimmed(client: Any) -> None:
    rate = Rate(2, 1000)
    bucket = AsyncRedisBucket([rate], client, new_key())
    assert await bucket.put(RateItem("a", T0))
    assert await bucket.put(RateItem("b", T0 + 500))
    assert not await bucket.put(RateItem("x", T0 + 1001, 2))  # refused, but trims "a" away
    late = RateItem("c", T0 + 1000)  # stamped before "x" was decided, decided after it
    # At T0 + 1000 it would make three in [T0, T0 + 1000]: it is booked when "a" has left.
    assert await bucket.reserve(late, None) == (0, None, T0 + 1001)
    assert late.timestamp == T0 + 1000
    assert_windows_hold([(T0, 1), (T0 + 500, 1), (T0 + 1001, 1)], [rate])
    assert not await bucket.put(RateItem("d", T0 + 1001))


async def test_weight_costs_no_extra_commands(client: Any, admin: redis.Redis) -> None:
    light = AsyncRedisBucket([Rate(10**9, Duration.HOUR)], client, new_key())
    heavy = AsyncRedisBucket([Rate(10**9, Duration.HOUR)], client, new_key())
    for bucket in (light, heavy):  # connects (and says hello) outside the count
        assert await bucket.put(RateItem("warm-up", T0))
    calls = []
    for bucket, weight in ((light, 1), (heavy, 10_000)):
        await arun_blocking(admin.config_resetstat)
        for i in range(20):
            assert await bucket.put(RateItem("k", T0 + i, weight))
        calls.append(await command_calls(admin))
    assert calls[0] == calls[1]
    assert calls[0]["cmdstat_evalsha"] == 20  # one round trip per decision
    assert calls[0]["cmdstat_zadd"] == 20  # one entry per item, whatever its weight
    assert await heavy.count() == 200_001


class CountingWaits(LimiterHooks):
    def __init__(self) -> None:
        self.waits = 0

    def waiting(self, name: str, weight: int, delay_ms: int) -> None:
        self.waits += 1


async def test_a_delayed_acquire_is_one_round_trip_and_one_more_as_it_wakes(client: Any, admin: redis.Redis) -> None:
    bucket = AsyncRedisBucket([Rate(2, 50)], client, new_key())
    waits = CountingWaits()
    limiter = AsyncLimiter(bucket, max_delay=1000, hooks=[waits])
    assert await bucket.count() == 0  # connects outside the count
    await arun_blocking(admin.config_resetstat)
    for _ in range(6):
        assert await limiter.try_acquire("k")
    calls = await command_calls(admin)
    assert waits.waits >= 2
    # A waiter that wakes reads the pause (one set while it slept moves it behind): paused_until.
    assert calls["cmdstat_evalsha"] == 6 + waits.waits
    assert set(calls) <= {"cmdstat_evalsha", *(f"cmdstat_{c}" for c in _SCRIPT_COMMANDS)}


_SCRIPT_COMMANDS = [
    "del",
    "exists",
    "get",
    "mget",
    "set",
    "pexpire",
    "zadd",
    "zcard",
    "zincrby",
    "zrange",
    "zrangebyscore",
    "zrem",
    "zremrangebyrank",
    "zscore",
    "time",
]


async def test_concurrent_waiters_keep_every_window_within_its_limit(client: Any) -> None:
    rates = [Rate(3, 60), Rate(5, 150)]
    bucket = AsyncRedisBucket(rates, client, new_key())
    admitted: list[tuple[int, int]] = []

    async def worker(i: int) -> None:
        item = RateItem("k", T0 + i, 1 + i % 2)
        delay, rate = (await bucket.reserve(item, 10_000))[:2]
        assert rate is None
        admitted.append((item.timestamp + delay, item.weight))

    async with AsyncTaskGroup() as tasks:
        for i in range(24):
            tasks.start_soon(worker, i)
    assert_windows_hold(admitted, rates)


async def test_script_flush_in_the_middle_of_traffic_is_invisible(client: Any, admin: redis.Redis) -> None:
    bucket = AsyncRedisBucket([Rate(10, Duration.MINUTE)], client, new_key())
    results = []
    for i in range(15):
        if i % 4 == 1:
            await arun_blocking(admin.script_flush)
        results.append(await bucket.put(RateItem("k", T0 + i)))
    assert results == [True] * 10 + [False] * 5
    assert await arun_blocking(admin.script_exists, SHA) == [True]


async def test_a_restarted_server_reads_as_a_backend_failure_then_recovers(
    redis_handle: RedisServer, native_async_driver: bool
) -> None:
    client = redis_client(redis_handle.url, native_async_driver, retries=1)
    try:
        bucket = AsyncRedisBucket([Rate(2, Duration.MINUTE)], client, new_key())
        limiter = AsyncLimiter(bucket)
        assert await limiter.try_acquire("k")
        await arun_blocking(redis_handle.stop)
        try:
            for _ in range(3):
                with pytest.raises(BackendError, match="Redis backend of RedisBucket") as failed:
                    await limiter.try_acquire("k")
                assert f"(key {bucket.bucket_key!r}) failed: ConnectionError: " in str(failed.value)
                assert isinstance(failed.value.__cause__, redis.RedisError)
                assert not isinstance(failed.value, BucketFullException)
        finally:
            await arun_blocking(redis_handle.start)
        # The server came back empty, with no script cached: both are recovered silently.
        assert await limiter.try_acquire("k")
        assert await limiter.try_acquire("k")
        with pytest.raises(BucketFullException):
            await limiter.try_acquire("k")
        assert await bucket.count() == 2
    finally:
        await aresolve(close_client(client))


async def test_every_key_expires_after_the_longest_interval_and_reservations(client: Any, admin: redis.Redis) -> None:
    key = new_key()
    bucket = AsyncRedisBucket([Rate(1, 2000), Rate(2, 4000)], client, key)
    assert await bucket.put(RateItem("k", T0))
    keys = [key, f"{{{key}}}:state:{key}"]
    # The longest span (interval + 1) and a second of slack are needed; renewed one span ahead.
    for name in keys:
        assert 5001 - 100 < await arun_blocking(admin.pttl, name) <= 5001 + 4001
    assert (await bucket.reserve(RateItem("k", T0 + 10), 3000))[:2] == (1991, None)
    for name in keys:
        assert 5001 + 1991 - 100 < await arun_blocking(admin.pttl, name) <= 5001 + 1991 + 4001
    assert len({key_slot(name.encode()) for name in keys}) == 1  # one hash tag: one cluster node


async def test_server_time_decides_at_the_servers_clock(client: Any, admin: redis.Redis) -> None:
    bucket = AsyncRedisBucket([Rate(2, Duration.MINUTE)], client, new_key(), server_time=True)
    seconds, micros = await arun_blocking(admin.time)
    before = seconds * 1000 + micros // 1000
    far_future, far_past = RateItem("a", T0 * 2), RateItem("b", 0)
    verdicts = [await bucket.reserve(item, None) for item in (far_future, far_past)]
    assert not await bucket.put(RateItem("c", T0 * 3))  # the clocks disagree; the server decides
    stamps = []
    for item, verdict in zip((far_future, far_past), verdicts, strict=True):
        assert verdict[:2] == (0, None)  # recorded at once, at the server's time, which it says
        at = recorded_at(item, verdict)
        assert before <= at <= before + 10_000
        stamps.append(at)
    assert [await bucket.peek(i) for i in (1, 0)] == [RateItem("a", stamps[0]), RateItem("b", stamps[1])]
    assert await bucket.leak(T0 * 5) == 0  # leaks at the server's clock too, not at the one given
    late = RateItem("d", 0)
    verdict = await bucket.reserve(late, Duration.MINUTE + 1)
    assert verdict[1] is None
    assert 0 < verdict[0] <= Duration.MINUTE + 1  # the first items free their room a minute and 1 ms on
    assert recorded_at(late, verdict) == stamps[0] + Duration.MINUTE + 1 == (await bucket.peek(0) or far_past).timestamp


async def test_a_limiter_waits_at_the_servers_clock(client: Any, admin: redis.Redis) -> None:
    bucket = AsyncRedisBucket([Rate(2, 50)], client, new_key(), server_time=True)
    limiter = AsyncLimiter(bucket, max_delay=1000)
    seconds, micros = await arun_blocking(admin.time)
    for _ in range(5):
        assert await limiter.try_acquire("k")
    newest = await bucket.peek(0)
    assert newest is not None
    assert newest.timestamp - (seconds * 1000 + micros // 1000) >= 100  # two full windows waited out


async def test_names_are_data_not_code(client: Any) -> None:
    bucket = AsyncRedisBucket([Rate(3, Duration.MINUTE)], client, "a}{b'; redis.call('FLUSHALL') --" + new_key())
    odd = "x:1:y') redis.call('FLUSHALL') --\n\u00e9"
    assert await bucket.put(RateItem(odd, T0, 2))
    newest = await bucket.peek(1)
    assert newest is not None
    assert newest.name == odd
    await bucket.release(RateItem(odd, T0, 2))
    assert await bucket.count() == 0
    # Spaces and the empty name too (bytes, NUL and lone surrogates are refused by every backend alike).
    assert await bucket.put(RateItem(" a b", T0 + 1))
    assert await bucket.put(RateItem("", T0 + 1))
    assert [(await bucket.peek(i)) for i in (1, 0)] == [RateItem(" a b", T0 + 1), RateItem("", T0 + 1)]


# Keys a user may pass: plain, with a hash tag of their own, ones no tag can quote whole, empty.
KEY_SHAPES = ["{uid}", "{{user-{uid}}}:api", "closing }} {uid}", "{{}}{uid}", ""]


@pytest.mark.parametrize("kind", ["redis", "redis_cluster"])
@pytest.mark.parametrize("shape", KEY_SHAPES)
async def test_deleting_the_users_key_resets_the_bucket_completely(
    kind: str, shape: str, request: pytest.FixtureRequest
) -> None:
    # What v3 users do to reset a limit: DEL the key they named. Here it is the log itself.
    key = shape.format(uid=uuid.uuid4().hex)
    bucket = await MAKERS[kind]([Rate(3, Duration.MINUTE)], key, request)
    assert isinstance(bucket, AsyncRedisBucket)
    try:
        await bucket.flush()
        for _ in range(3):
            assert await bucket.put(RateItem("k", T0))
        # Waiting state too: a place reserved a minute ahead.
        assert (await bucket.reserve(RateItem("k", T0), 2 * Duration.MINUTE))[:2] == (Duration.MINUTE + 1, None)
        assert await bucket.waiting(RateItem("k", T0)) == Duration.MINUTE + 1
        assert await aresolve(bucket.redis.type(key)) == b"zset"
        assert await aresolve(bucket.redis.delete(key)) == 1
        assert await bucket.count() == 0
        assert await bucket.waiting(RateItem("k", T0)) == 0
        for _ in range(3):
            assert await bucket.put(RateItem("k", T0))
        assert not await bucket.put(RateItem("k", T0))
        assert await bucket.count() == 3
    finally:
        await bucket.flush()
        await bucket.aclose()


async def test_a_3x_log_found_at_the_key_is_cleared_on_first_use(client: Any) -> None:
    key = new_key()
    # 3.9's layout: one member per unit, scored by its timestamp.
    await aresolve(client.zadd(key, {f"k:{T0}:{i}": T0 for i in range(5)}))
    bucket = AsyncRedisBucket([Rate(2, Duration.MINUTE)], client, key)
    assert await bucket.put(RateItem("k", T0))
    assert await bucket.put(RateItem("k", T0))
    assert not await bucket.put(RateItem("k", T0))
    assert await bucket.count() == 2
    await bucket.flush()
