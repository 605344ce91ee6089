"""The async batcher: requests made together go in one call, and each caller gets its own answer."""

from __future__ import annotations

import uuid
from typing import Any

import anyio
import pytest
import redis

from pyrate_limiter import AsyncRedisBucket, Rate, RateItem
from pyrate_limiter._batching import AsyncBatcher
from pyrate_limiter._concurrency import aresolve, arun_blocking
from pyrate_limiter._rate import recorded_at

from .redis_clients import close_client, redis_client
from .windows import assert_windows_hold


class Server:
    """Answers each request with its double, and remembers the batches it was sent."""

    def __init__(self, fail: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.fail = fail
        self.reached = anyio.Event()
        self.go_on = anyio.Event()
        self.leader = -1

    async def send(self, requests: list[Any]) -> list[Any]:
        self.batches.append(list(requests))
        self.leader = requests[0]  # the leader's request comes first
        self.reached.set()
        await self.go_on.wait()
        if self.fail:
            raise ConnectionError("lost")
        return [2 * r for r in requests]


async def ask_all(batcher: AsyncBatcher, requests: list[int]) -> dict[int, Any]:
    answers: dict[int, Any] = {}

    async def ask(r: int) -> None:
        try:
            answers[r] = await batcher.submit(r)
        except ConnectionError as error:
            answers[r] = error

    async with anyio.create_task_group() as tasks:
        for r in requests:
            tasks.start_soon(ask, r)
    return answers


async def test_requests_made_together_share_one_call_and_get_their_own_replies() -> None:
    server = Server()
    server.go_on.set()
    batcher = AsyncBatcher(server.send)
    assert await ask_all(batcher, list(range(40))) == {r: 2 * r for r in range(40)}
    assert len(server.batches) == 1
    assert sorted(server.batches[0]) == list(range(40))
    assert await batcher.submit(5) == 10  # alone, later: a batch of one
    assert server.batches[-1] == [5]


async def test_a_batch_in_flight_is_closed_and_the_next_one_starts_at_once() -> None:
    server = Server()
    batcher = AsyncBatcher(server.send)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(batcher.submit, 1)
        await server.reached.wait()  # the first batch is in flight, not answered yet
        server.reached = anyio.Event()
        tasks.start_soon(batcher.submit, 2)
        await server.reached.wait()  # the second was sent without waiting for the first
        server.go_on.set()
    assert server.batches == [[1], [2]]


async def test_the_limit_splits_batches() -> None:
    server = Server()
    server.go_on.set()
    batcher = AsyncBatcher(server.send, limit=16)
    assert await ask_all(batcher, list(range(40))) == {r: 2 * r for r in range(40)}
    assert sorted(len(batch) for batch in server.batches) == [8, 16, 16]
    assert sorted(r for batch in server.batches for r in batch) == list(range(40))


async def test_every_caller_of_a_failed_batch_gets_the_error() -> None:
    server = Server(fail=True)
    server.go_on.set()
    answers = await ask_all(AsyncBatcher(server.send), list(range(5)))
    assert len(server.batches) == 1
    assert all(isinstance(answer, ConnectionError) for answer in answers.values())


async def test_a_cancelled_leader_still_answers_the_others() -> None:
    server = Server()
    batcher = AsyncBatcher(server.send)
    answers: dict[int, int] = {}
    scopes: dict[int, anyio.CancelScope] = {}

    async def ask(r: int) -> None:
        with anyio.CancelScope() as scope:
            scopes[r] = scope
            answers[r] = await batcher.submit(r)

    async with anyio.create_task_group() as tasks:
        for r in range(3):
            tasks.start_soon(ask, r)
        await server.reached.wait()
        leader = server.leader
        scopes[leader].cancel()  # while its batch is in flight
        server.go_on.set()
    assert len(server.batches) == 1
    assert sorted(server.batches[0]) == [0, 1, 2]
    assert {r: answers[r] for r in range(3) if r != leader} == {r: 2 * r for r in range(3) if r != leader}


async def test_a_leader_cancelled_while_others_join_still_sends_their_batch() -> None:
    server = Server()
    server.go_on.set()
    batcher = AsyncBatcher(server.send)
    scopes: dict[int, anyio.CancelScope] = {}
    order: list[int] = []
    answers: dict[int, int] = {}

    async def ask(r: int) -> None:
        with anyio.CancelScope() as scope:
            scopes[r] = scope
            if order:  # the first one leads, still letting the tasks that are ready join: cancel it now
                scopes[order[0]].cancel()
            order.append(r)
            answers[r] = await batcher.submit(r)

    async with anyio.create_task_group() as tasks:
        for r in range(2):
            tasks.start_soon(ask, r)
    leader, joiner = order
    assert server.batches == [[leader, joiner]]
    assert answers == {joiner: 2 * joiner}


async def test_a_lone_caller_cancelled_during_its_call_is_cancelled_at_once() -> None:
    server = Server()  # never answers until told
    batcher = AsyncBatcher(server.send)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(batcher.submit, 1)
            await server.reached.wait()
            tasks.cancel_scope.cancel()  # no one else waits for its call: nothing holds it
    server.go_on.set()
    assert await batcher.submit(2) == 4  # the batcher is not left holding a closed batch
    assert server.batches == [[1], [2]]


async def test_a_lone_caller_cancelled_before_its_call_sends_nothing() -> None:
    server = Server()
    server.go_on.set()
    batcher = AsyncBatcher(server.send)
    with anyio.CancelScope() as scope:
        scope.cancel()
        await batcher.submit(1)
    assert server.batches == []
    assert await batcher.submit(2) == 4


async def test_concurrent_redis_acquires_share_round_trips_and_keep_every_window(
    redis_url: str, native_async_driver: bool
) -> None:
    # Under trio the bucket has a sync client in worker threads: the batch is gathered the same way.
    client = redis_client(redis_url, native_async_driver)
    rates = [Rate(20, 100), Rate(50, 1000)]
    bucket = AsyncRedisBucket(rates, client, f"test-batching-{uuid.uuid4().hex}")
    admitted: list[tuple[int, int]] = []
    refused = 0

    async def acquire(i: int) -> None:
        nonlocal refused
        item = RateItem(f"n{i % 3}", T0 + i // 10, 1 + i % 3)
        verdict = await bucket.reserve(item, 200 if i % 2 else None)
        if verdict[1] is None:
            admitted.append((recorded_at(item, verdict), item.weight))
        else:
            refused += 1

    with redis.Redis.from_url(redis_url) as admin:
        try:
            await arun_blocking(admin.config_resetstat)
            async with anyio.create_task_group() as tasks:
                for i in range(120):
                    tasks.start_soon(acquire, i)
            calls = (await arun_blocking(admin.info, "commandstats"))["cmdstat_evalsha"]["calls"]
        finally:
            await bucket.flush()
            await aresolve(close_client(client))
    assert calls < 10, calls  # 120 decisions, in a few round trips
    assert admitted
    assert refused
    assert_windows_hold(admitted, rates)


T0 = 1_700_000_000_000
pytestmark = pytest.mark.anyio
