"""Hammer one limiter from concurrent workers and record every call for ``tests/realtime.py``.

``RecordingBucket`` sits between the limiter and the real bucket and notes, per item name, the
stamp each decision was made at and the stamp each admitted item was stored at.
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING

from pyrate_limiter import (
    AsyncAbstractBucket,
    AsyncLimiter,
    AsyncMonotonicClock,
    BucketFullException,
    LimiterDelayException,
)
from pyrate_limiter._concurrency import AsyncTaskGroup, asleep
from pyrate_limiter._rate import recorded_at
from tests.realtime import NS_PER_MS, Call

if TYPE_CHECKING:
    from collections.abc import Sequence

    from pyrate_limiter import Rate, RateItem
    from pyrate_limiter._rate import Verdict
    from pyrate_limiter._state import Usage


# Where in a millisecond (ns past its start) workers begin: late, so that the first window fills
# in its last part; bursts later still, so that their waiters' wake-ups have room in the next
# millisecond. A burst's later calls are made before EARLY_IN_A_MS.
LATE_IN_A_MS = 700_000
BURSTS_IN_A_MS = 850_000
EARLY_IN_A_MS = 100_000


class RecordingBucket(AsyncAbstractBucket):
    """Delegates everything to ``inner``; notes where ``reserve`` decided and stored each item.

    :ivar decided: item name -> the time (ms) the bucket decided it at: its stamp, or later
        when the verdict says it was recorded later than asked.
    :ivar stored: item name -> the stamp (ms) it was recorded at, as the verdict says.
    """

    def __init__(self, inner: AsyncAbstractBucket) -> None:
        self.inner = inner
        self.rates = inner.rates
        self.decided: dict[str, int] = {}
        self.stored: dict[str, int] = {}

    async def reserve(self, item: RateItem, max_delay: int | None) -> Verdict:
        verdict = await self.inner.reserve(item, max_delay)
        if verdict[1] is None:
            stored = recorded_at(item, verdict)
            self.stored[item.name] = stored
            self.decided[item.name] = stored - verdict[0]
        else:
            self.decided[item.name] = item.timestamp
        return verdict

    async def put(self, item: RateItem) -> bool:
        return await self.inner.put(item)

    async def release(self, item: RateItem) -> None:
        await self.inner.release(item)

    async def leak(self, current_timestamp: int) -> int:
        return await self.inner.leak(current_timestamp)

    async def flush(self) -> None:
        await self.inner.flush()

    async def count(self) -> int:
        return await self.inner.count()

    async def peek(self, index: int) -> RateItem | None:
        return await self.inner.peek(index)

    async def waiting(self, item: RateItem) -> int:
        return await self.inner.waiting(item)

    async def state(self, item: RateItem) -> tuple[int, Usage]:
        return await self.inner.state(item)

    async def pause_until(self, name: str, until: int) -> int:
        return await self.inner.pause_until(name, until)

    async def paused_until(self, name: str) -> int:
        return await self.inner.paused_until(name)

    async def aclose(self) -> None:
        await self.inner.aclose()

    def call(self, name: str, weight: int, before: int, after: int, admitted: bool) -> Call:
        """The record of one finished call, joined with what the bucket decided for it."""
        return Call(name, weight, before, after, admitted, self.decided.get(name), self.stored.get(name))


def recording_limiter(bucket: AsyncAbstractBucket) -> tuple[AsyncLimiter, RecordingBucket]:
    """A limiter over ``bucket`` on the monotonic clock, the one the brackets read; never raising."""
    recording = RecordingBucket(bucket)
    return AsyncLimiter(recording, clock=AsyncMonotonicClock(), raise_when_fail=False), recording


async def hammer(
    limiter: AsyncLimiter,
    recording: RecordingBucket,
    prefix: str,
    start: int,
    until: int,
    weights: Sequence[int],
    max_delay: int | None,
    calls: list[Call],
    spelling: str = "try_acquire",
) -> None:
    """Acquire again and again from ``start`` until ``until`` (monotonic ns), recording each call.

    ``max_delay=None`` polls (a refusal returns at once); otherwise each call may wait.
    """
    await sleep_until(start)
    n = 0
    while time.monotonic_ns() < until:
        await acquire(limiter, recording, f"{prefix}-{n}", weights[n % len(weights)], max_delay, calls, spelling)
        n += 1
        await asleep(0)  # let the others in: an in-memory acquire never yields


async def burst(
    limiter: AsyncLimiter,
    recording: RecordingBucket,
    prefix: str,
    start: int,
    until: int,
    every: int,
    calls_each: int,
    max_delay: int,
    calls: list[Call],
) -> None:
    """From ``start``, every ``every`` ns until ``until``: acquire ``calls_each`` times in a row.

    Workers doing this together are a crowd arriving late in one millisecond and coming back
    early in the next ones: the first fill a window in its last part, the rest wait for the next
    window and return early in its first millisecond, where a bucket that freed a window's room
    one stamp early would have let them overlap the first.
    """
    n = 0
    while start < until:
        await sleep_until(start)
        for _ in range(calls_each):
            await acquire(limiter, recording, f"{prefix}-{n}", 1, max_delay, calls)
            n += 1
            while time.monotonic_ns() % NS_PER_MS >= EARLY_IN_A_MS:
                await asleep(0)
        start += every


# How a worker asks: each spelling of an admission the limiter offers.
SPELLINGS = ["try_acquire", "acquire", "reserve", "reserve_cancel"]


async def acquire(
    limiter: AsyncLimiter,
    recording: RecordingBucket,
    name: str,
    weight: int,
    max_delay: int | None,
    calls: list[Call],
    spelling: str = "try_acquire",
) -> None:
    """One call, bracketed by monotonic readings, appended to ``calls``.

    ``reserve_cancel`` reserves and gives back every place that must be waited for.
    """
    before = time.monotonic_ns()
    cancelled = False
    if spelling == "try_acquire":
        admitted = await limiter.try_acquire(name, weight, max_delay=max_delay)
    elif spelling == "acquire":
        try:
            async with limiter.acquire(name, weight, max_delay=max_delay):
                admitted = True
        except (BucketFullException, LimiterDelayException):
            admitted = False
    else:
        reservation = await limiter.reserve(name, weight, max_delay=max_delay)
        admitted = reservation is not None
        if reservation is not None and spelling == "reserve_cancel" and reservation.delay_ms:
            await reservation.cancel()
            admitted, cancelled = False, True
        elif reservation is not None:
            await reservation.wait()
    after = time.monotonic_ns()
    call = recording.call(name, weight, before, after, admitted)
    calls.append(dataclasses.replace(call, cancelled=cancelled) if cancelled else call)


async def sleep_until(deadline: int) -> None:
    """Return at monotonic ``deadline`` (ns), give or take a few microseconds: sleep, then spin."""
    ahead = (deadline - time.monotonic_ns()) / 1e9 - 0.003
    if ahead > 0:
        await asleep(ahead)
    while time.monotonic_ns() < deadline:
        await asleep(0)


def late_start(offset: int, ahead: int = 5) -> int:
    """A monotonic time (ns) ``ahead`` ms or so from now, ``offset`` ns into its millisecond."""
    return (time.monotonic_ns() // NS_PER_MS + ahead) * NS_PER_MS + offset


def burst_shape(rates: Sequence[Rate], workers: int) -> tuple[int, int]:
    """How often (ns) ``workers`` burst, and how many calls each makes, under ``rates``.

    Each crowd is half as heavy again as the tightest limit, so that a third of it waits; one
    comes every two longest intervals, so that the bucket empties in between.
    """
    every = (2 * max(rate.interval for rate in rates) + 10) * NS_PER_MS
    return every, max(2, -(-3 * min(rate.limit for rate in rates) // (2 * workers)))


async def run_workers(
    bucket: AsyncAbstractBucket,
    seconds: float,
    weights: Sequence[int],
    max_delays: Sequence[int | None],
    spelling: str = "try_acquire",
) -> tuple[list[Call], list[tuple[str, int] | None]]:
    """One worker per entry of ``max_delays`` hammers one limiter over ``bucket`` for ``seconds``.

    They start together late in a millisecond, so that the first window fills in its last part.
    The limiter's leak (every 10 s) never runs within a run this short: every trim of the bucket
    comes from a decision, as ``backend_problems`` assumes.

    :return: every call, and what the bucket holds afterwards (see ``read_units``).
    """
    limiter, recording = recording_limiter(bucket)
    calls: list[Call] = []
    start = late_start(LATE_IN_A_MS)
    until = start + int(seconds * 1e9)
    async with limiter, AsyncTaskGroup() as tasks:
        for worker, max_delay in enumerate(max_delays):
            tasks.start_soon(
                hammer, limiter, recording, f"r{worker}", start, until, weights, max_delay, calls, spelling
            )
    return calls, await read_units(bucket)


async def run_bursts(
    bucket: AsyncAbstractBucket, seconds: float, workers: int, max_delay: int
) -> tuple[list[Call], list[tuple[str, int] | None]]:
    """``workers`` callers arrive in bursts (see ``burst`` and ``burst_shape``).

    :return: every call, and what the bucket holds afterwards (see ``read_units``).
    """
    limiter, recording = recording_limiter(bucket)
    calls: list[Call] = []
    start = late_start(BURSTS_IN_A_MS)
    until = start + int(seconds * 1e9)
    every, calls_each = burst_shape(bucket.rates, workers)
    async with limiter, AsyncTaskGroup() as tasks:
        for worker in range(workers):
            prefix = f"b{worker}"
            tasks.start_soon(burst, limiter, recording, prefix, start, until, every, calls_each, max_delay, calls)
    return calls, await read_units(bucket)


async def read_units(bucket: AsyncAbstractBucket) -> list[tuple[str, int] | None]:
    """``(name, stamp)`` of each unit ``peek`` shows, newest first; ``None`` where it shows nothing."""
    units: list[tuple[str, int] | None] = []
    for index in range(await bucket.count()):
        unit = await bucket.peek(index)
        units.append(None if unit is None else (str(unit.name), unit.timestamp))
    return units
