"""Cancellation storms (async only: threads cannot be cancelled): many waiters hold reservations,
half of them are cancelled at once, and the bucket keeps no phantom of them. What is left, and
every newcomer, is admitted exactly where the closed-window rule says, and never more than a
rate allows in one real window."""

from __future__ import annotations

import dataclasses
import itertools
import time
from typing import TYPE_CHECKING

import anyio
import pytest

from pyrate_limiter import Rate, RateItem
from tests._async.bucket_kinds import ATOMIC, MAKERS
from tests._async.recording import read_units, recording_limiter
from tests.realtime import NS_PER_MS, Call, backend_problems, earliest_fit, realtime_problems

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from pyrate_limiter import AsyncAbstractBucket, AsyncLimiter
    from tests._async.recording import RecordingBucket

# A storm of waiters per backend, and a rate that lets them all through in about half a second.
STORMS = {kind: (150, Rate(25, 100)) for kind in ATOMIC} | {"in_memory": (1000, Rate(100, 50))}
WAIT = 10_000  # ms: a max_delay no waiter reaches
NEWCOMERS = 5
_keys = itertools.count()


@pytest.fixture(params=sorted(ATOMIC))
async def storm(request: pytest.FixtureRequest) -> AsyncIterator[tuple[AsyncAbstractBucket, int, Rate]]:
    """A fresh bucket of each atomic kind, with the number of waiters and the rate to storm it with."""
    waiters, rate = STORMS[request.param]
    bucket = await MAKERS[request.param]([rate], f"storm-{next(_keys)}", request)
    try:
        # Warm up: the first decision may create tables and open connections, the storm must not wait.
        warm = RateItem("warm", time.monotonic_ns() // NS_PER_MS, 1)
        assert (await bucket.reserve(warm, None))[:2] == (0, None)
        await bucket.release(warm)
        assert await bucket.count() == 0
        yield bucket, waiters, rate
    finally:
        await bucket.flush()
        await bucket.aclose()


async def test_cancelled_waiters_leave_no_phantom_and_the_rest_get_in_where_the_rule_says(
    storm: tuple[AsyncAbstractBucket, int, Rate],
) -> None:
    bucket, waiters, rate = storm
    limiter, recording = recording_limiter(bucket)
    calls: list[Call] = []
    scopes = {f"w{i}": anyio.CancelScope() for i in range(waiters)}
    async with limiter, anyio.create_task_group() as tasks:
        for name in scopes:
            tasks.start_soon(wait_in, limiter, recording, name, scopes[name], calls)
        with anyio.fail_after(30):
            while len(recording.decided) < waiters:  # noqa: ASYNC110 - bounded by fail_after
                await anyio.sleep(0.001)

        await anyio.sleep(0.01)  # a short while into their wait
        # The storm: every other waiter still well ahead of its time is cancelled, all at once.
        soon = time.monotonic_ns() // NS_PER_MS + 20
        pending = sorted((at, name) for name, at in recording.stored.items() if at > soon)
        victims = {name for _, name in pending[::2]}
        assert len(victims) >= waiters // 4, "the waiters were admitted too early to storm them"
        for name in victims:
            scopes[name].cancel()
        with anyio.fail_after(30):
            while sum(call.name in victims for call in calls) < len(victims):  # noqa: ASYNC110
                await anyio.sleep(0.001)
        assert {call.name for call in calls if call.cancelled} == victims

        # No phantom: the bucket holds exactly those still admitted or waiting, and counts no more.
        holding = [held(recording, name) for name in scopes if name not in victims]
        units = await read_units(bucket)
        assert backend_problems([*calls, *holding], units, rate.interval) == []
        assert len(units) == await bucket.count() <= len(holding)
        now = time.monotonic_ns() // NS_PER_MS
        stamps = [(call.stored, call.weight) for call in holding if call.stored is not None]
        assert await bucket.waiting(RateItem("probe", now, 1)) == earliest_fit(stamps, [rate], now, 1) - now

        # Newcomers, one decision at a time, are put where the rule puts them among the survivors.
        for n in range(NEWCOMERS):
            name = f"new{n}"
            tasks.start_soon(wait_in, limiter, recording, name, anyio.CancelScope(), calls)
            with anyio.fail_after(10):
                while name not in recording.decided:  # noqa: ASYNC110 - bounded by fail_after
                    await anyio.sleep(0.0005)
            expected = earliest_fit(stamps, [rate], recording.decided[name], 1)
            assert recording.stored[name] == expected, f"{name} was put behind capacity nobody holds"
            stamps.append((expected, 1))

    problems = realtime_problems(calls, [rate])
    problems += backend_problems(calls, await read_units(bucket), rate.interval)
    assert not problems, "\n".join(problems)
    assert sum(call.admitted for call in calls) == waiters - len(victims) + NEWCOMERS


async def wait_in(
    limiter: AsyncLimiter, recording: RecordingBucket, name: str, scope: anyio.CancelScope, calls: list[Call]
) -> None:
    """One waiter: admitted once its reservation comes, or cancelled before (giving it back)."""
    before = time.monotonic_ns()
    admitted = False
    with scope:
        admitted = await limiter.try_acquire(name, 1, max_delay=WAIT)
    after = time.monotonic_ns()
    call = recording.call(name, 1, before, after, admitted)
    calls.append(dataclasses.replace(call, cancelled=scope.cancelled_caught))


def held(recording: RecordingBucket, name: str) -> Call:
    """A call the bucket holds a place for: admitted already, or due to be once its time comes."""
    return Call(name, 1, 0, 0, True, recording.decided[name], recording.stored[name])


@pytest.fixture(params=sorted(ATOMIC))
async def full_for_a_minute(request: pytest.FixtureRequest) -> AsyncIterator[tuple[AsyncAbstractBucket, Rate]]:
    """A fresh bucket of each atomic kind whose window outlasts any test: a place reserved
    behind a full window is in the future however slowly the reservations before it went."""
    rate = Rate(5, 60_000)
    bucket = await MAKERS[request.param]([rate], f"minute-{next(_keys)}", request)
    try:
        yield bucket, rate
    finally:
        await bucket.flush()
        await bucket.aclose()


async def test_a_reservation_whose_wait_is_cancelled_gives_its_place_back(
    full_for_a_minute: tuple[AsyncAbstractBucket, Rate],
) -> None:
    bucket, rate = full_for_a_minute
    limiter, _ = recording_limiter(bucket)
    limiter.max_delay = 2 * rate.interval
    for _ in range(rate.limit):
        assert await limiter.reserve("held") is not None
    waiting = await limiter.reserve("cancelled")
    assert waiting is not None
    assert waiting.delay_ms > 0
    with anyio.move_on_after(0.001):
        await waiting.wait()
    assert await bucket.count() == rate.limit  # no phantom
    again = await limiter.reserve("next")
    assert again is not None
    assert again.at <= waiting.at  # the freed place (or an earlier one) is the next caller's
