"""The Redis bucket's pause: kept in the bucket's state beside its log, on one node and on a cluster."""

from __future__ import annotations

import random
import struct
import uuid
from typing import TYPE_CHECKING, Any, Protocol

import pytest
import redis

from pyrate_limiter import AsyncInMemoryBucket, AsyncLimiter, AsyncRedisBucket, Rate, RateItem
from pyrate_limiter._concurrency import AsyncTaskGroup, aresolve, arun_blocking
from pyrate_limiter._drivers.redis import state_key
from pyrate_limiter._rate import recorded_at

from ..windows import assert_windows_hold
from .bucket_kinds import MAKERS

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

T0 = 1_700_000_000_000
SLACK = 1000  # the second both keys outlive what they must keep, for clocks that drift apart


class RedisMaker(Protocol):
    async def __call__(self, rates: list[Rate], *, server_time: bool = False) -> AsyncRedisBucket: ...


@pytest.fixture(params=["redis", "redis_cluster"])
async def make(request: pytest.FixtureRequest) -> AsyncIterator[RedisMaker]:
    """Make Redis buckets, each on a key of its own, on one node or on a cluster; flushed and closed after."""
    made: list[AsyncRedisBucket] = []

    async def create(rates: list[Rate], *, server_time: bool = False) -> AsyncRedisBucket:
        bucket = await MAKERS[request.param](rates, f"test-pause-{uuid.uuid4().hex}", request)
        assert isinstance(bucket, AsyncRedisBucket)
        made.append(bucket)
        if server_time:  # the same client and key, deciding at the server's clock
            bucket = AsyncRedisBucket(rates, bucket.redis, bucket.bucket_key, server_time=True)
        return bucket

    yield create
    for bucket in made:
        await bucket.flush()
        await bucket.aclose()


@pytest.fixture
def admin(redis_url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_url) as made:
        yield made


async def raw(bucket: AsyncRedisBucket, command: str, *args: Any) -> Any:
    """A command on the bucket's own client (a cluster client routes it to the keys' node)."""
    return await aresolve(getattr(bucket.redis, command)(*args))


async def ttls(bucket: AsyncRedisBucket) -> list[int]:
    return [await raw(bucket, "pttl", key) for key in (bucket.bucket_key, state_key(bucket.bucket_key))]


async def test_a_pause_refuses_an_item_that_would_fit(make: RedisMaker) -> None:
    bucket = await make([Rate(2, 1000)])
    pause = T0 + 5000
    assert await bucket.pause_until("k", pause) == pause
    assert (await bucket.reserve(RateItem("k", T0), None))[:2] == (5000, bucket.rates[0])
    assert not await bucket.put(RateItem("k", T0 + 10))
    assert bucket.failing_rate == bucket.rates[0]
    assert (await bucket.reserve(RateItem("k", T0 + 20), 4979))[:2] == (4980, bucket.rates[0])
    assert await bucket.count() == 0  # nothing recorded by a refusal


async def test_a_wait_long_enough_reserves_at_the_pause_end_then_the_rule_goes_on(make: RedisMaker) -> None:
    bucket = await make([Rate(2, 1000)])
    pause = T0 + 5000
    await bucket.pause_until("k", pause)
    first = RateItem("k", T0)
    assert (await bucket.reserve(first, 5000))[:2] == (5000, None)
    assert first.timestamp == T0  # keeps its stamp: the limiter sleeps the delay from it
    assert (await bucket.reserve(RateItem("k", T0 + 1), 10_000))[:2] == (pause - T0 - 1, None)
    # Two at the pause's end fill the rate: the third waits for the first to leave its window.
    assert (await bucket.reserve(RateItem("k", T0 + 2), 10_000))[:2] == (pause + 1001 - T0 - 2, None)
    assert [(await bucket.peek(i)) for i in (2, 1, 0)] == [
        RateItem("k", pause),
        RateItem("k", pause),
        RateItem("k", pause + 1001),
    ]


async def test_the_rate_that_pushed_an_item_past_the_pause_is_named(make: RedisMaker) -> None:
    bucket = await make([Rate(1, 100), Rate(2, 1000)])
    assert await bucket.put(RateItem("k", T0))
    assert await bucket.put(RateItem("k", T0 + 101))
    await bucket.pause_until("k", T0 + 150)
    # At the pause's end the first rate has room from T0 + 202, the second only from T0 + 1001.
    assert (await bucket.reserve(RateItem("k", T0 + 110), None))[:2] == (891, bucket.rates[1])
    assert await bucket.waiting(RateItem("k", T0 + 110)) == 891


async def test_an_item_stamped_at_the_pause_end_decides_as_usual(make: RedisMaker) -> None:
    bucket = await make([Rate(2, 1000)])
    pause = T0 + 5000
    assert await bucket.put(RateItem("k", T0))  # a state, so the usual acquire's short way is open
    await bucket.pause_until("k", pause)
    assert not await bucket.put(RateItem("k", pause - 1))
    assert await bucket.put(RateItem("k", pause))
    assert await bucket.put(RateItem("k", pause))
    assert not await bucket.put(RateItem("k", pause + 1))  # the rule again, the pause no longer
    assert bucket.failing_rate == bucket.rates[0]
    assert await bucket.waiting(RateItem("k", pause + 1)) == 1000


async def test_a_shorter_pause_never_shortens_a_longer_one(make: RedisMaker) -> None:
    bucket = await make([Rate(2, 1000)])
    assert await bucket.paused_until("k") == 0
    assert await bucket.pause_until("k", T0 + 5000) == T0 + 5000
    assert await bucket.pause_until("other", T0 + 100) == T0 + 5000  # one pause for the bucket
    assert await bucket.pause_until("k", 0) == T0 + 5000
    assert await bucket.paused_until("k") == T0 + 5000
    assert await bucket.pause_until("k", T0 + 7000) == T0 + 7000
    assert await bucket.paused_until("other") == T0 + 7000


async def test_waiting_and_state_count_the_pause_from_the_items_stamp(make: RedisMaker) -> None:
    rate = Rate(2, 1000)
    bucket = await make([rate])
    assert await bucket.put(RateItem("k", T0))
    await bucket.pause_until("k", T0 + 5000)
    item = RateItem("k", T0 + 10)
    assert await bucket.waiting(item) == 4990
    assert await bucket.state(item) == (4990, [(rate, 1, 991)])  # the usage is the log's, untouched
    assert await bucket.waiting(RateItem("k", T0 + 10, 3)) == -1  # a weight that never fits still never does
    assert (await bucket.reserve(RateItem("k", T0 + 10, 3), 10**9))[:2] == (-1, rate)
    assert await bucket.waiting(RateItem("k", T0 + 6000)) == 0


async def test_the_pause_outlives_leaks_and_idle_expiry_until_its_end_and_flush_forgets_it(make: RedisMaker) -> None:
    rate = Rate(1, 1000)
    bucket = await make([rate])
    assert await bucket.put(RateItem("k", T0))
    pause = T0 + 60_000
    await bucket.pause_until("k", pause)
    # Both keys are kept from the last time the bucket saw until the pause's end, and a second more.
    for ttl in await ttls(bucket):
        assert pause - T0 + 1001 + SLACK - 5000 < ttl <= pause - T0 + 1001 + SLACK
    assert await bucket.leak(T0 + 30_000) == 1  # the log is empty now
    assert await bucket.count() == 0
    assert await bucket.paused_until("k") == pause
    for ttl in await ttls(bucket):
        assert pause - T0 - 30_000 + 1001 + SLACK - 5000 < ttl <= pause - T0 + 1001 + SLACK
    assert (await bucket.reserve(RateItem("k", T0 + 30_000), None))[:2] == (30_000, rate)
    await bucket.flush()
    assert await bucket.paused_until("k") == 0
    assert await bucket.put(RateItem("k", T0 + 30_000))


async def test_a_pause_on_a_bucket_never_used_is_kept_until_a_decision_tells_the_time(make: RedisMaker) -> None:
    bucket = await make([Rate(1, 1000)])
    pause = T0 + 60_000
    await bucket.pause_until("k", pause)  # no time known yet: kept as if the clock were at 0
    for ttl in await ttls(bucket):
        assert ttl > pause - T0 + 1001 + SLACK
    assert (await bucket.reserve(RateItem("k", T0), 60_000))[:2] == (60_000, None)
    # Recorded: the keys now live from that decision's time, past the pause and the entry at its end.
    for ttl in await ttls(bucket):
        assert pause - T0 + 1001 + SLACK - 5000 < ttl <= pause - T0 + 3 * 1001 + SLACK
    assert await bucket.paused_until("k") == pause


@pytest.mark.parametrize("used", [False, True, "emptied"])
async def test_deleting_the_users_key_forgets_the_pause(make: RedisMaker, used: bool | str) -> None:
    bucket = await make([Rate(1, 1000)])
    if used:
        assert await bucket.put(RateItem("k", T0))
    await bucket.pause_until("k", T0 + 60_000)
    if used == "emptied":
        assert await bucket.leak(T0 + 30_000) == 1
    # The key is there even with no entry in the log, so that this resets the bucket, pause and all.
    assert await raw(bucket, "delete", bucket.bucket_key) == 1
    assert await bucket.paused_until("k") == 0
    assert await bucket.put(RateItem("k", T0 + 30_000))
    assert await bucket.paused_until("k") == 0


async def test_two_buckets_on_one_key_share_the_pause(make: RedisMaker) -> None:
    rates = [Rate(2, 1000)]
    one = await make(rates)
    other = AsyncRedisBucket(rates, one.redis, one.bucket_key)  # like another process
    await one.pause_until("k", T0 + 5000)
    assert await other.paused_until("k") == T0 + 5000
    assert (await other.reserve(RateItem("k", T0), None))[:2] == (5000, rates[0])
    assert await other.pause_until("k", T0 + 4000) == T0 + 5000
    assert await other.pause_until("k", T0 + 8000) == T0 + 8000
    assert (await one.reserve(RateItem("k", T0), 10_000))[:2] == (8000, None)
    assert await other.count() == 1


async def test_concurrent_waiters_queue_behind_the_pause_within_every_window(make: RedisMaker) -> None:
    rates = [Rate(3, 60), Rate(5, 150)]
    bucket = await make(rates)
    pause = T0 + 1000
    await bucket.pause_until("k", pause)
    admitted: list[tuple[int, int]] = []

    async def worker(i: int) -> None:
        item = RateItem("k", T0 + i, 1 + i % 2)
        verdict = await bucket.reserve(item, 10_000)
        assert verdict[1] is None
        admitted.append((recorded_at(item, verdict), item.weight))

    async with AsyncTaskGroup() as tasks:
        for i in range(16):
            tasks.start_soon(worker, i)
    assert min(at for at, _ in admitted) == pause
    assert_windows_hold(admitted, rates)


async def test_with_server_time_the_pause_end_is_on_the_servers_clock(make: RedisMaker) -> None:
    bucket = await make([Rate(2, 1000)], server_time=True)
    seconds, micros = await raw(bucket, "time")
    now = seconds * 1000 + micros // 1000
    pause = now + 60_000
    await bucket.pause_until("k", pause)
    for item in (RateItem("k", 0), RateItem("k", T0 * 3)):  # the items' own stamps do not matter
        delay, rate = (await bucket.reserve(item, None))[:2]
        assert rate == bucket.rates[0]
        assert 55_000 < delay <= 60_000  # counted from the server's time it was decided at
    for ttl in await ttls(bucket):  # kept from the server's time: exactly as long as the pause needs
        assert 55_000 < ttl <= 60_000 + 1001 + SLACK


async def test_matches_the_in_memory_reference_on_random_traffic_with_pauses(make: RedisMaker) -> None:
    rng = random.Random(20261207)
    rates = [Rate(5, 100), Rate(12, 1000)]
    ours, reference = await make(rates), AsyncInMemoryBucket(rates)
    t, pause = T0, 0
    for step in range(400):
        t += rng.randint(0, 25)
        stamp = t - rng.choice([0, 0, 3, 15, 150])  # skewed clocks: items older than the newest entry
        if t >= pause:
            # The reference forgets a pause once an item stamped past it is decided: no stamp goes back behind it.
            stamp = max(stamp, pause)
        weight, name, roll = rng.choice([1, 1, 1, 2, 3, 6]), f"n{step % 3}", rng.random()
        if roll < 0.05:
            pause = max(pause, t + rng.choice([-50, 10, 200, 1500]))
            await ours.pause_until(name, pause)
            await reference.pause_until(name, pause)
        elif roll < 0.65:
            max_delay = rng.choice([None, 0, 40, 300, 5000])
            item, expected = RateItem(name, stamp, weight), RateItem(name, stamp, weight)
            got = await ours.reserve(item, max_delay)
            assert got == await reference.reserve(expected, max_delay), step
            if got[1] is None and got[0] > 0 and rng.random() < 0.3:  # a cancelled waiter
                at = recorded_at(item, got)
                await ours.release(RateItem(name, at, weight))
                await reference.release(RateItem(name, at, weight))
        elif roll < 0.8:
            item = RateItem(name, stamp, weight)
            assert await ours.waiting(item) == await reference.waiting(item), step
            assert await ours.state(item) == await reference.state(item), step
        elif roll < 0.9:
            assert await ours.leak(stamp) == await reference.leak(stamp), step
        else:
            assert await ours.put(RateItem(name, stamp, weight)) == await reference.put(RateItem(name, stamp, weight))
            assert ours.failing_rate == reference.failing_rate
        assert await ours.count() == await reference.count(), step


async def test_a_paused_decision_is_still_one_script_call(redis_url: str, admin: redis.Redis) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        bucket = AsyncRedisBucket([Rate(2, 50)], client, f"test-pause-{uuid.uuid4().hex}")
        limiter = AsyncLimiter(bucket, max_delay=10_000)
        assert await bucket.put(RateItem("k", T0))
        await bucket.pause_until("k", T0 + 100)
        await arun_blocking(admin.config_resetstat)
        for i in range(4):
            assert not await bucket.put(RateItem("k", T0 + i))
        assert (await bucket.reserve(RateItem("k", T0 + 10), 1000))[:2] == (90, None)
        assert await limiter.try_acquire("k")  # the limiter's clock is far past the pause
        stats: dict[str, Any] = await arun_blocking(admin.info, "commandstats")
        assert stats["cmdstat_evalsha"]["calls"] == 6
        await bucket.flush()
    finally:
        client.close()


@pytest.mark.parametrize("name", ["k", "a-name-long-enough-to-fill-the-new-layouts-doubles"])
async def test_a_state_of_the_previous_layout_reads_as_a_reset(make: RedisMaker, name: str) -> None:
    bucket = await make([Rate(2, 1000)])
    member = struct.pack(">q", T0)[2:]  # an entry of the first name, as the previous layout kept it
    old = struct.pack("<dddddddd", 0, -(2**52), 0, 2, T0, T0, T0 + 10**6, len(name)) + name.encode() + member
    await raw(bucket, "zadd", bucket.bucket_key, {member: 2})
    await raw(bucket, "set", state_key(bucket.bucket_key), old, None, 60_000)
    assert await bucket.count() == 0  # started afresh, not read as two items (nor as garbage)
    assert await bucket.put(RateItem(name, T0))
    assert await bucket.put(RateItem(name, T0))
    assert not await bucket.put(RateItem(name, T0))
    assert await bucket.paused_until(name) == 0


async def test_a_pause_takes_the_names_every_bucket_takes(make: RedisMaker) -> None:
    bucket = await make([Rate(2, 1000)])
    with pytest.raises(ValueError, match="NUL"):
        await bucket.pause_until("a\0b", T0)
    with pytest.raises(TypeError, match="a name must be a str"):
        await bucket.paused_until(b"k")  # type: ignore[arg-type]
    assert await bucket.paused_until("k") == 0


async def test_a_pause_to_the_end_of_time_holds(make: RedisMaker) -> None:
    bucket = await make([Rate(2, 1000)])
    assert await bucket.pause_until("k", 2**62) == 2**62  # a power of two: exact as a double too
    delay, rate = (await bucket.reserve(RateItem("k", T0), None))[:2]
    assert rate == bucket.rates[0]
    assert abs(delay - (2**62 - T0)) <= 2**10  # past 2**53 the script's doubles round
    assert not await bucket.put(RateItem("k", 2**52))
