"""Lost Redis replies: a call the client sends again is answered again, never recorded twice.

``DEBUG SLEEP`` holds the server while the client's ``socket_timeout`` runs out: redis-py then
resends the call on a new connection, and the server, waking, runs every copy it received.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

import pytest
import redis

from pyrate_limiter import AsyncRedisBucket, BackendError, Duration, Rate, RateItem
from pyrate_limiter._concurrency import AsyncTaskGroup, aresolve
from tests.redis_clients import close_client, redis_client

if TYPE_CHECKING:
    from collections.abc import Iterator

T0 = 1_700_000_000_000
RATES = [Rate(1000, Duration.MINUTE)]


@contextlib.contextmanager
def server_asleep(url: str, seconds: float) -> Iterator[None]:
    """Redis busy in ``DEBUG SLEEP`` for ``seconds``: the block starts once a PING goes unanswered."""
    admin, probe = redis.Redis.from_url(url), redis.Redis.from_url(url, socket_timeout=0.05)
    sleeper = threading.Thread(target=admin.execute_command, args=("DEBUG", "SLEEP", seconds))
    sleeper.start()
    try:
        while True:
            try:
                probe.ping()
            except redis.TimeoutError:
                break  # asleep
        yield
    finally:
        sleeper.join()
        admin.close()
        probe.close()


@pytest.fixture
async def bucket(redis_url: str, native_async_driver: bool) -> Any:
    # Five retries of 0.25 s outlast the one-second sleep: the call succeeds in the end.
    client = redis_client(redis_url, native_async_driver, retries=5, socket_timeout=0.25)
    made = AsyncRedisBucket(RATES, client, f"faults-{uuid.uuid4().hex}")
    assert await made.put(RateItem("warm", T0))  # the script cached and a connection open
    yield made
    await made.flush()
    await aresolve(close_client(client))


async def test_a_call_sent_again_after_a_lost_reply_is_recorded_once(bucket: AsyncRedisBucket, redis_url: str) -> None:
    with server_asleep(redis_url, 1.0):
        assert await bucket.put(RateItem("k", T0, weight=3))
    assert await bucket.count() == 1 + 3


async def test_concurrent_calls_resent_after_lost_replies_are_recorded_once_each(
    bucket: AsyncRedisBucket, redis_url: str
) -> None:
    admitted: list[bool] = []

    async def put(n: int) -> None:
        admitted.append(await bucket.put(RateItem(f"k{n}", T0)))

    with server_asleep(redis_url, 1.0):
        async with AsyncTaskGroup() as tasks:
            for n in range(20):
                tasks.start_soon(put, n)
    assert admitted == [True] * 20
    assert await bucket.count() == 1 + 20


async def test_a_reply_lost_for_good_says_the_outcome_is_unknown(redis_url: str, native_async_driver: bool) -> None:
    client = redis_client(redis_url, native_async_driver, retries=0, socket_timeout=0.25)
    bucket = AsyncRedisBucket(RATES, client, f"faults-{uuid.uuid4().hex}")
    try:
        assert await bucket.put(RateItem("warm", T0))
        with server_asleep(redis_url, 0.6), pytest.raises(BackendError, match="Timeout") as failed:
            await bucket.put(RateItem("k", T0))
        assert failed.value.recorded is None
        deadline = time.monotonic() + 5
        while await _count_or_none(bucket) is None:  # the timed-out connection is replaced
            assert time.monotonic() < deadline
        assert await bucket.count() == 2  # it was recorded after all: that is what unknown means
        await bucket.flush()
    finally:
        await aresolve(close_client(client))


async def test_a_server_never_reached_certainly_recorded_nothing(native_async_driver: bool) -> None:
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = redis_client(f"redis://127.0.0.1:{port}/0", native_async_driver, retries=0)
    try:
        with pytest.raises(BackendError) as failed:
            await AsyncRedisBucket(RATES, client, "nowhere").put(RateItem("k", T0))
        assert failed.value.recorded is False
    finally:
        await aresolve(close_client(client))


async def _count_or_none(bucket: AsyncRedisBucket) -> int | None:
    try:
        return await bucket.count()
    except BackendError:
        return None


# -- the server drops the connection, forgets the script, runs out of memory ------------------


@pytest.fixture
def admin(redis_url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_url) as client:
        yield client


async def quiet_bucket(redis_url: str, native_async_driver: bool) -> AsyncRedisBucket:
    """A bucket whose client never retries: each fault reaches the caller."""
    client = redis_client(redis_url, native_async_driver, retries=0)
    made = AsyncRedisBucket(RATES, client, f"faults-{uuid.uuid4().hex}")
    assert await made.put(RateItem("warm", T0))  # the script cached and a connection open
    return made


async def test_killed_connections_are_replaced_and_nothing_is_lost_or_doubled(
    redis_url: str, native_async_driver: bool, admin: redis.Redis
) -> None:
    # redis-py's own retries (the default client): a call on a connection the server closed is sent
    # again on a new one, and the call key makes sure that a resent call is recorded once.
    client = redis_client(redis_url, native_async_driver)
    bucket = AsyncRedisBucket(RATES, client, f"faults-{uuid.uuid4().hex}")
    assert await bucket.put(RateItem("warm", T0))
    try:
        admitted = 0
        for _ in range(5):
            admin.client_kill_filter(_type="normal", skipme=True)
            admitted += await bucket.put(RateItem("k", T0))  # the same bucket: a new connection
        assert admitted == 5
        assert await bucket.count() == 1 + 5
    finally:
        await bucket.flush()
        await aresolve(close_client(bucket.redis))


async def test_a_flushed_script_is_loaded_again_without_the_caller_noticing(
    redis_url: str, native_async_driver: bool, admin: redis.Redis
) -> None:
    bucket = await quiet_bucket(redis_url, native_async_driver)
    try:
        admin.script_flush()
        assert await bucket.put(RateItem("k", T0, weight=2))
        admin.script_flush()
        assert (await bucket.state(RateItem("k", T0)))[1][0][1] == 1 + 2
        assert await bucket.count() == 1 + 2
    finally:
        await bucket.flush()
        await aresolve(close_client(bucket.redis))


async def test_a_server_out_of_memory_refuses_clearly_records_nothing_and_recovers(
    redis_url: str, native_async_driver: bool, admin: redis.Redis
) -> None:
    bucket = await quiet_bucket(redis_url, native_async_driver)
    limit, policy = (
        str(admin.config_get("maxmemory")["maxmemory"]),
        str(admin.config_get("maxmemory-policy")["maxmemory-policy"]),
    )
    try:
        admin.config_set("maxmemory-policy", "noeviction")
        admin.config_set("maxmemory", 1)  # below what the server uses already: every write is refused
        with pytest.raises(BackendError, match=rf"Redis.*{bucket.bucket_key}.*OutOfMemory") as failed:
            await bucket.put(RateItem("k", T0, weight=3))
        assert failed.value.recorded is False
    finally:
        admin.config_set("maxmemory", limit)
        admin.config_set("maxmemory-policy", policy)
    try:
        assert await bucket.put(RateItem("k", T0, weight=3))
        assert await bucket.count() == 1 + 3  # nothing of the refused call
    finally:
        await bucket.flush()
        await aresolve(close_client(bucket.redis))
