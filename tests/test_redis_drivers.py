"""The Redis driver seam: which driver each variant gives a client, how it fails, and the script file."""

from __future__ import annotations

import threading
import uuid
from importlib.resources import files
from typing import TYPE_CHECKING, Any

import anyio
import pytest
import redis
import redis.asyncio

from pyrate_limiter import BackendError, Rate, RateItem
from pyrate_limiter._concurrency import aresolve
from pyrate_limiter._drivers.redis import OPS, SCRIPT, SHA, NativeDriver, async_driver, driver, request, rule, state_key
from pyrate_limiter._sync.buckets.redis import RedisBucket
from pyrate_limiter.buckets.redis_bucket import LuaScript
from tests.redis_clients import close_client, redis_client

if TYPE_CHECKING:
    from collections.abc import Iterator


class ThreadRecordingRedis(redis.Redis):
    """A sync client that notes the thread each command runs in."""

    threads: list[int]

    def execute_command(self, *args: Any, **options: Any) -> Any:
        self.threads.append(threading.get_ident())
        return super().execute_command(*args, **options)  # type: ignore[no-untyped-call]


@pytest.fixture
def recording(redis_url: str) -> Iterator[ThreadRecordingRedis]:
    with ThreadRecordingRedis.from_url(redis_url) as client:
        client.threads = []
        yield client


def count_call(key: str) -> tuple[tuple[bytes, ...], list[bytes]]:
    """The keys and arguments of the script's ``count`` on a fresh bucket at ``key``: it answers 0."""
    keys = (key.encode(), state_key(key))
    return keys, [OPS["count"] + request(0, 0, -1, "") + rule([(1, 1001)])]


def test_the_script_is_the_lua_file_whole_and_its_sha_is_the_one_redis_computes(redis_url: str) -> None:
    text = files("pyrate_limiter._drivers").joinpath("redis.lua").read_text(encoding="utf-8")
    assert text == SCRIPT
    assert SCRIPT.startswith("-- The Redis bucket's script")  # the layout of keys and ARGV heads the file
    assert LuaScript.PUT_ITEM == SCRIPT  # v3's holder of the text
    with redis.Redis.from_url(redis_url, decode_responses=True) as admin:
        assert admin.script_load(SCRIPT) == SHA


def test_a_sync_client_runs_in_the_caller_for_sync_and_in_a_worker_thread_for_async(
    recording: ThreadRecordingRedis,
) -> None:
    keys, args = count_call(f"test-drivers-{uuid.uuid4().hex}")
    assert driver(recording, "test").script(keys, args) == 0
    assert recording.threads == [threading.get_ident()]

    async def run_async() -> Any:
        return await async_driver(recording, "test").script(keys, args)

    for backend in ("asyncio", "trio"):
        recording.threads.clear()
        assert anyio.run(run_async, backend=backend) == 0
        assert recording.threads
        assert threading.get_ident() not in recording.threads


def test_an_async_client_is_awaited_natively(redis_url: str) -> None:
    keys, args = count_call(f"test-drivers-{uuid.uuid4().hex}")

    async def run_native() -> Any:
        client = redis.asyncio.Redis.from_url(redis_url)
        try:
            native = async_driver(client, "test")
            assert isinstance(native, NativeDriver)
            return await native.script(keys, args)
        finally:
            await client.aclose()

    assert anyio.run(run_native, backend="asyncio") == 0


def test_the_sync_variant_refuses_an_async_client_naming_the_async_twin(redis_url: str) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)  # never connects: nothing to close
    with pytest.raises(TypeError, match=r"got an async one: it needs the async twin \(AsyncRedisBucket\)"):
        driver(client, "test")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"sync client for RedisBucket \(key 'k'\)"):
        RedisBucket([Rate(1, 1000)], client, "k")  # type: ignore[arg-type]


FAILED = r"^the Redis backend of RedisBucket \(key 'k'\) failed: ConnectionError: "
UNREACHABLE = "redis://127.0.0.1:1"


@pytest.mark.parametrize(("native", "backend"), [(True, "asyncio"), (False, "asyncio"), (False, "trio")])
def test_every_async_driver_call_that_fails_raises_a_backend_error_naming_the_owner(native: bool, backend: str) -> None:
    keys, args = count_call("k")

    async def each_call() -> None:
        client = redis_client(UNREACHABLE, native, retries=0)
        try:
            unreachable = async_driver(client, "RedisBucket (key 'k')")
            for call in (lambda: unreachable.script(keys, args), unreachable.load, lambda: unreachable.delete(*keys)):
                with pytest.raises(BackendError, match=FAILED) as raised:
                    await call()
                assert isinstance(raised.value.__cause__, redis.ConnectionError)
        finally:
            await aresolve(close_client(client))

    anyio.run(each_call, backend=backend)


def test_every_sync_driver_call_that_fails_raises_a_backend_error_naming_the_owner() -> None:
    keys, args = count_call("k")
    with redis_client(UNREACHABLE, False, retries=0) as client:
        unreachable = driver(client, "RedisBucket (key 'k')")
        for call in (lambda: unreachable.script(keys, args), unreachable.load, lambda: unreachable.delete(*keys)):
            with pytest.raises(BackendError, match=FAILED) as raised:
                call()
            assert isinstance(raised.value.__cause__, redis.ConnectionError)


def test_a_command_counter_put_on_the_client_after_the_bucket_is_made_sees_each_call(redis_url: str) -> None:
    # As the benchmark and tracing tools do: execute_command is looked up on every call.
    with redis.Redis.from_url(redis_url) as client:
        bucket = RedisBucket([Rate(5, 1000)], client, f"test-drivers-{uuid.uuid4().hex}")
        seen: list[Any] = []
        real = client.execute_command

        def counting(*args: Any, **options: Any) -> Any:
            seen.append(args[0])
            return real(*args, **options)

        client.execute_command = counting
        try:
            assert bucket.put(RateItem("k", 1_700_000_000_000))
            assert bucket.count() == 1
        finally:
            del client.execute_command
        assert seen == ["EVALSHA", "EVALSHA"]
