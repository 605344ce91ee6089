"""The accuracy scenario: the promise, measured in real time. No real 1 s window may hold more than
Rate(100, 1 s) admits, and a limiter keeping time admits close to the ideal count."""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import contextvars
import threading
import time
from typing import TYPE_CHECKING, Any

from .limiters import async_limiter, ours

if TYPE_CHECKING:
    from .measure import Row


ACCURACY_LIMIT, ACCURACY_INTERVAL = 100, 1000  # Rate(100, 1 s)
Call = tuple[int, int, int | None]  # one admitted call: before (ns), after (ns), its stamp (ms) if known
_stamp: contextvars.ContextVar[int | None] = contextvars.ContextVar("bench_stamp", default=None)
"""The time (ms) the bucket recorded this thread's or task's last admitted item at."""


def sc_accuracy(pl: Any, p: Row) -> list[Row]:
    """Rate(100, 1 s) on an in-memory bucket and the monotonic clock, called by 4 threads (sync
    ``Limiter``) or 100 asyncio tasks (``AsyncLimiter``), polling (no ``max_delay``, refusals return
    ``False``, tasks yield after each call) or waiting (``max_delay`` 2 s), until a deadline.

    Per admitted call (weight 1, so weights are counts): ``before`` and ``after``,
    ``time.monotonic_ns()`` just before the call and just after it returned, and its stamp, the
    time its bucket recorded it at (see ``stamping_bucket``) when known. The admission happened in
    ``[lower, upper]``, ``lower = max(before, stamp)`` (``before`` without a stamp; a stamp in ms
    counts from the start of its millisecond), ``upper = after``: not before the call, nor before
    the time the bucket counts it from. Waiters in flight at the deadline still return; they count
    in the first row, not in the second. Rows:

    * the most admissions that certainly fall inside one real 1 s window (a set does when
      ``max(upper) - min(lower) <= 1 s``): a correct limiter never exceeds 100, no tolerance. The
      extra shows the most whose return times fall within any 1 s, which a caller descheduled
      between its admission and its reading of the clock can push past 100 even then.
    * admitted / ideal in %: admitted counts the calls returned by the deadline; ideal is
      ``100 + 100 * D / 1 s``, ``D`` the span from the first admission (the least ``lower``) to the
      deadline: the first window's 100, then 100 a second. The deadline is the start plus
      ``windows`` seconds plus 2 % of that. A sliding log admits in bursts, a window's worth each
      time one comes round, so a run ending just before a burst reads a window short (~83 % over
      5 s) however well the limiter keeps time; with the 2 %, one whose windows come round on time
      has its last burst in (98.4 % over 5 windows, 98.7 % over 2), one whose windows come round
      over 2 % late does not (~83 %, ~75 %).
    """
    asynchronous = p["mode"] == "tasks"
    bucket = stamping_bucket(pl, [pl.Rate(ACCURACY_LIMIT, pl.Duration.SECOND)], asynchronous)
    options: Row = {"raise_when_fail": False, "max_delay": 2 * ACCURACY_INTERVAL if p["wait"] else None}
    run_ns = int(p["windows"] * ACCURACY_INTERVAL * 1.02 * 1e6)
    run = accuracy_tasks if asynchronous else accuracy_threads
    calls, refused, deadline = run(pl, bucket, options, run_ns)
    return accuracy_rows(calls, refused if p["wait"] else 0, deadline)


def stamping_bucket(pl: Any, rates: list[Any], asynchronous: bool) -> Any:
    """An in-memory bucket that puts the time it records each admitted item at in ``_stamp``.

    Ours: the item's timestamp after ``reserve`` (which moves an item from a lagging clock up)
    plus the delay reserved. Upstream: the timestamp of the item its ``put`` accepted (v3 adds the
    time it slept before putting a waiting item again); its async bucket is this one wrapped.
    """
    if not ours(pl):

        class PutStamping(pl.InMemoryBucket):  # type: ignore[misc]
            def put(self, item: Any) -> Any:
                accepted = super().put(item)
                if accepted is True:
                    _stamp.set(item.timestamp)
                return accepted

        return pl.BucketAsyncWrapper(PutStamping(rates)) if asynchronous else PutStamping(rates)
    if asynchronous:

        class AsyncStamping(pl.AsyncInMemoryBucket):  # type: ignore[misc]
            async def reserve(self, item: Any, max_delay: int | None) -> Any:
                verdict = await super().reserve(item, max_delay)
                if verdict[1] is None:  # recorded (a refusal adds what each rate has left)
                    _stamp.set(item.timestamp + verdict[0])
                return verdict

        return AsyncStamping(rates)

    class Stamping(pl.InMemoryBucket):  # type: ignore[misc]
        def reserve(self, item: Any, max_delay: int | None) -> Any:
            verdict = super().reserve(item, max_delay)
            if verdict[1] is None:
                _stamp.set(item.timestamp + verdict[0])
            return verdict

    return Stamping(rates)


def accuracy_threads(pl: Any, bucket: Any, options: Row, run_ns: int) -> tuple[list[Call], int, int]:
    """4 threads calling a sync limiter until the deadline: the admitted calls, refusals, deadline."""
    limiter = pl.Limiter(bucket, clock=pl.MonotonicClock(), **options)
    acquire, start, deadline = limiter.try_acquire, threading.Barrier(5), [0]
    outcomes: list[tuple[list[Call], int]] = []
    failures: list[Exception] = []

    def thread() -> None:
        calls: list[Call] = []
        refused = 0
        start.wait()
        try:
            while True:
                _stamp.set(None)
                before = time.monotonic_ns()
                if before >= deadline[0]:
                    break
                if acquire("k"):
                    calls.append((before, time.monotonic_ns(), _stamp.get()))
                else:
                    refused += 1
        except Exception as error:  # reported by the worker, as any scenario's
            failures.append(error)
        outcomes.append((calls, refused))

    threads = [threading.Thread(target=thread) for _ in range(4)]
    for each in threads:
        each.start()
    deadline[0] = time.monotonic_ns() + run_ns
    start.wait()
    for each in threads:
        each.join()
    limiter.dispose(bucket)
    if failures:
        raise failures[0]
    return [call for calls, _ in outcomes for call in calls], sum(refused for _, refused in outcomes), deadline[0]


def accuracy_tasks(pl: Any, bucket: Any, options: Row, run_ns: int) -> tuple[list[Call], int, int]:
    """100 asyncio tasks calling an async limiter until the deadline: as ``accuracy_threads``."""
    clock = pl.AsyncMonotonicClock() if ours(pl) else pl.MonotonicClock()
    calls: list[Call] = []
    refused = [0]

    async def main() -> int:
        async with contextlib.AsyncExitStack() as stack:
            limiter = async_limiter(pl, bucket, clock=clock, **options)
            if hasattr(limiter, "__aenter__"):
                await stack.enter_async_context(limiter)
            acquire = limiter.try_acquire

            async def task(deadline: int) -> None:
                while True:
                    _stamp.set(None)
                    before = time.monotonic_ns()
                    if before >= deadline:
                        return
                    if await acquire("k"):
                        calls.append((before, time.monotonic_ns(), _stamp.get()))
                    else:
                        refused[0] += 1
                    await asyncio.sleep(0)  # an in-memory refusal never suspends: pollers take turns

            deadline = time.monotonic_ns() + run_ns
            await asyncio.gather(*(task(deadline) for _ in range(100)))
            return deadline

    deadline = asyncio.run(main())
    return calls, refused[0], deadline


def accuracy_rows(calls: list[Call], refused: int, deadline: int) -> list[Row]:
    """The two rows of ``sc_accuracy`` from its admitted calls."""
    if not calls:
        raise RuntimeError("no call was admitted")
    window = ACCURACY_INTERVAL * 1_000_000
    bounds = [(before if stamp is None else max(before, stamp * 1_000_000), after) for before, after, stamp in calls]
    certain = most_certainly_within(bounds, window)
    by_return = most_within(sorted(after for _, after in bounds), window)
    notes = [f"by return times {by_return}", f"{len(calls)} admitted"]
    unstamped = sum(stamp is None for _, _, stamp in calls)
    late = sum(lower > upper for lower, upper in bounds)  # returned before the time it was recorded at
    notes += [f"{unstamped} unstamped"] * bool(unstamped) + [f"{late} stamped after return"] * bool(late)
    span_ns = deadline - min(lower for lower, _ in bounds)
    ideal = ACCURACY_LIMIT * (1 + span_ns / window)
    admitted = sum(after <= deadline for _, after in bounds)
    throughput = f"{admitted} of {ideal:.1f} in {span_ns / 1e9:.3f} s" + f", {refused} refused" * bool(refused)
    return [
        {"value": certain, "unit": "in 1 s", "extra": ", ".join(notes)},
        {"value": 100 * admitted / ideal, "unit": "%", "extra": throughput},
    ]


def most_within(times: list[int], window: int) -> int:
    """The most of the sorted ``times`` inside any closed interval ``window`` long."""
    best, first = 0, 0
    for last, t in enumerate(times):
        while t - times[first] > window:
            first += 1
        best = max(best, last - first + 1)
    return best


def most_certainly_within(bounds: list[tuple[int, int]], window: int) -> int:
    """The most events, each known to lie in its ``(lower, upper)``, certainly inside one closed
    interval ``window`` long: the largest set with ``max(upper) - min(lower) <= window``, found by
    trying each ``lower`` as the set's least."""
    bounds = sorted(bounds)
    lowers = [lower for lower, _ in bounds]
    best = 0
    for lower in sorted(set(lowers)):
        end = lower + window
        first, stop = bisect.bisect_left(lowers, lower), bisect.bisect_right(lowers, end)
        best = max(best, sum(upper <= end for _, upper in bounds[first:stop]))
    return best
