"""Benchmark pyrate_limiter against the floors of this machine and, if asked, against upstream 3.9.0.

    .venv/bin/python scripts/bench.py [--quick] [--only PATTERN] [--compare-upstream]

Each scenario runs in a worker process (this file with ``--worker``), which measures right after every
round the floor that scenario cannot beat on this machine: an uncontended ``threading.Lock`` and a
``time.time()`` call for in-memory work, an ``EVALSHA`` of a one-``ZADD`` script for Redis,
``BEGIN IMMEDIATE``/``INSERT``/``COMMIT`` in WAL mode for SQLite, a one-statement transaction for
PostgreSQL. The "x floor" column is a scenario's µs/op over its floor's, so it reads the same on a
slow machine and a fast one.

``--compare-upstream`` also runs every scenario, through the same v3 API code, against
pyrate-limiter 3.9.0 from PyPI, in a virtualenv made under a temporary directory for this run and
removed at its end: both packages are imported as ``pyrate_limiter``, so upstream never enters our
environment. Its floors are measured in its own worker too.

Timing on a small shared box is noisy, so rounds alternate between the sides (ours, upstream,
upstream, ours, ...), each side's median round is shown, and every ratio (ours/upstream, x floor)
is the median of the ratios of measurements run back to back. In-memory scenarios and their floor
count the worker thread's CPU time, not wall time; latencies are wall time. Redis and PostgreSQL are
started on loopback by ``tests/servers.py``, as for the tests, and stopped at the end; a backend that
is missing or fails shows ``n/a: <reason>`` in its row and the run goes on.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import contextvars
import functools
import gc
import itertools
import json
import os
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator

ROOT = Path(__file__).resolve().parent.parent
UPSTREAM_PACKAGES = ["pyrate-limiter==3.9.0", "redis", "psycopg[pool,binary]"]
ns = time.perf_counter_ns
Row = dict[str, Any]
Round = list[Row] | str  # a round's rows, or why it could not run
Target = tuple[str, float]
_seq = itertools.count()

# -- worker side: runs under either library, through the v3 API ------------------------------


def ours(pl: Any) -> bool:
    return hasattr(pl, "AsyncLimiter")


def big(pl: Any) -> list[Any]:
    """A rate no run ever fills: every acquire is admitted."""
    return [pl.Rate(10**9, pl.Duration.HOUR)]


def three(pl: Any) -> list[Any]:
    hour = pl.Duration.HOUR
    return [pl.Rate(10**7, pl.Duration.SECOND), pl.Rate(10**8, pl.Duration.MINUTE), pl.Rate(10**9, hour)]


def unique(prefix: str) -> str:
    return f"{prefix}_{os.getpid()}_{next(_seq)}"


def percentiles(samples: list[int]) -> tuple[float, float]:
    samples.sort()
    return samples[len(samples) // 2] / 1000, samples[int(len(samples) * 0.99)] / 1000


def measure(fn: Callable[..., Any], args: tuple[Any, ...], seconds: float, cpu: bool = False) -> Row:
    """Throughput as the median over ~2 ms batches, then per-call latencies without the timer's cost.

    ``cpu``: time batches by this thread's CPU time, so that other processes taking turns on the
    cores do not count (use it for scenarios that never wait on I/O).
    """
    gc.collect()
    clock = time.thread_time_ns if cpu else ns
    rates: list[float] = []
    batch, now, spent = 1, ns(), clock()
    deadline = now + int(seconds * 0.75e9)
    while now < deadline:
        for _ in range(batch):
            fn(*args)
        batch_start, now, spent_before, spent = now, ns(), spent, clock()
        rates.append(batch * 1e9 / max(spent - spent_before, 1))
        if now - batch_start < 2_000_000 and len(rates) < 20:
            batch *= 2
    ops = statistics.median(rates[len(rates) // 2 :])  # the first half warms up
    timer = min(-ns() + ns() for _ in range(200))
    samples: list[int] = []
    end = ns() + int(seconds * 0.25e9)
    while len(samples) < 100_000:
        t0 = ns()
        fn(*args)
        t1 = ns()
        samples.append(max(t1 - t0 - timer, 0))
        if t1 > end:
            break
    p50, p99 = percentiles(samples)
    return {"ops": ops, "us": 1e6 / ops, "p50": p50, "p99": p99}


async def ameasure(fn: Callable[..., Awaitable[Any]], tasks: int, seconds: float, loop: str, cpu: bool) -> Row:
    """Total throughput of ``tasks`` concurrent loops (per CPU second if ``cpu``), then each call's latency."""
    done, samples = [0], list[int]()

    async def spin(stop: int) -> None:
        while ns() < stop:
            for _ in range(16):
                await fn("k")
            done[0] += 16

    async def timed(stop: int) -> None:
        while ns() < stop and len(samples) < 100_000:
            t0 = ns()
            await fn("k")
            samples.append(ns() - t0)

    gc.collect()
    clock = time.thread_time_ns if cpu else ns
    start = clock()
    await gather(loop, [spin] * tasks, ns() + int(seconds * 0.75e9))
    ops = done[0] * 1e9 / (clock() - start)
    await gather(loop, [timed] * tasks, ns() + int(seconds * 0.25e9))
    p50, p99 = percentiles(samples)
    return {"ops": ops, "us": 1e6 / ops, "p50": p50, "p99": p99}


async def gather(loop: str, funcs: list[Callable[[int], Coroutine[Any, Any, None]]], stop: int) -> None:
    if loop == "asyncio":
        await asyncio.gather(*(func(stop) for func in funcs))
        return
    import trio

    async with trio.open_nursery() as nursery:
        for func in funcs:
            nursery.start_soon(func, stop)


def run_loop(loop: str, main: Callable[[], Coroutine[Any, Any, list[Row]]]) -> list[Row]:
    if loop == "trio":
        import trio

        return trio.run(main)
    return asyncio.run(main())


def per_key_factory(pl: Any, rates_for: Callable[[str], list[Any]], wrap_async: bool = False) -> Any:
    """A v3 ``BucketFactory`` subclass making one in-memory bucket per item name (async ones if asked)."""
    clock = pl.TimeClock()

    class PerKey(pl.BucketFactory):  # type: ignore[misc]
        def __init__(self) -> None:
            self.buckets: dict[str, Any] = {}

        def wrap_item(self, name: str, weight: int = 1) -> Any:
            return pl.RateItem(name, clock.now(), weight=weight)

        def get(self, item: Any) -> Any:
            bucket = self.buckets.get(item.name)
            if bucket is None:
                rates = rates_for(item.name)
                if not wrap_async:
                    bucket = self.create(clock, pl.InMemoryBucket, rates)
                else:  # unleaked on both sides: the sync factory's leak thread cannot await
                    wrapped = pl.BucketAsyncWrapper(pl.InMemoryBucket(rates)) if not ours(pl) else None
                    bucket = wrapped or pl.AsyncInMemoryBucket(rates)
                self.buckets[item.name] = bucket
            return bucket

    return PerKey()


def async_limiter(pl: Any, argument: Any, **kwargs: Any) -> Any:
    """Ours: ``AsyncLimiter``; upstream: its one ``Limiter`` over async buckets, awaited."""
    return (pl.AsyncLimiter if ours(pl) else pl.Limiter)(argument, **kwargs)


def build(pl: Any, p: Row, rates: list[Any], stack: contextlib.ExitStack) -> tuple[Any, Any]:
    """A sync limiter on ``p["backend"]`` and its client (Redis) or ``None``; cleanup goes on ``stack``."""
    backend, client = p["backend"], None
    if backend == "memory":
        return pl.Limiter(rates), None
    if backend == "redis":
        import redis

        client = stack.enter_context(redis.Redis.from_url(p["redis_url"]))
        bucket = pl.RedisBucket.init(rates, client, unique("bench"))
        stack.callback(bucket.flush)
    elif backend == "sqlite":
        directory = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-sqlite-"))
        bucket = pl.SQLiteBucket.init_from_file(rates, table="bench", db_path=f"{directory}/bench.sqlite")
        stack.callback(getattr(bucket, "close", None) or bucket.conn.close)
    else:
        from psycopg_pool import ConnectionPool

        pool = stack.enter_context(ConnectionPool(p["dsn"], min_size=1, max_size=2, open=True))
        bucket = pl.PostgresBucket(pool, unique("bench"), rates)
    limiter = pl.Limiter(bucket)
    stack.callback(limiter.dispose, bucket)  # before its connection closes: the leak thread must let go
    return limiter, client


# Floors: what any limiter on that backend must do at the least, timed by the same ``measure``.


def floor_memory(_pl: Any, p: Row) -> list[Row]:
    """An uncontended ``Lock`` acquire and release, then a ``time.time()`` call: every in-memory
    acquire takes a lock and reads the clock, so it cannot cost less than their sum. Explicit calls,
    not ``with``: the cheapest way to hold a lock."""
    lock = threading.Lock()
    acquire, release = lock.acquire, lock.release

    def lock_cycle() -> None:
        acquire()
        release()

    return [measure(lock_cycle, (), p["seconds"] / 2, cpu=True), measure(time.time, (), p["seconds"] / 2, cpu=True)]


def floor_redis(_pl: Any, p: Row) -> list[Row]:
    """``EVALSHA`` of a script that runs one ``ZADD``: one round trip, one script call, one write."""
    import redis

    with redis.Redis.from_url(p["redis_url"]) as client, redis_floor_call(client) as add:
        return [measure(add, (), p["seconds"])]


@contextlib.contextmanager
def redis_floor_call(client: Any) -> Iterator[Callable[[], None]]:
    """The Redis floor's one call, on ``client``; its key is deleted at the end."""
    key, scores = unique("benchfloor"), itertools.count()
    evalsha, sha = client.evalsha, client.script_load("return redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])")

    def add() -> None:
        score = next(scores)
        evalsha(sha, 1, key, score, score)

    try:
        yield add
    finally:
        client.delete(key)


def interleaved(
    fn: Callable[[], Any], floor: Callable[[], Any], seconds: float, chunk: int = 50, cpu: bool = False
) -> float:
    """``fn``'s time over ``floor``'s, alternating chunks of calls in this thread: the median ratio
    of chunks run back to back, so both see the same machine, for judging one against the other
    where a round each, a second apart, would not agree from run to run. ``cpu``: as in ``measure``."""
    clock = time.thread_time_ns if cpu else ns
    ratios: list[float] = []
    deadline = ns() + int(seconds * 1e9)
    while ns() < deadline or len(ratios) < 5:
        spent = []
        for call in (fn, floor) if len(ratios) % 2 == 0 else (floor, fn):
            start = clock()
            for _ in range(chunk):
                call()
            spent.append(clock() - start)
        ratios.append(spent[0] / spent[1] if len(ratios) % 2 == 0 else spent[1] / spent[0])
    return statistics.median(ratios)


def floor_sqlite(_pl: Any, p: Row) -> list[Row]:
    """``BEGIN IMMEDIATE``, one ``INSERT``, ``COMMIT`` on a file with the pragmas ``SQLiteBucket``
    sets (``journal_mode=WAL``, ``synchronous=NORMAL``): the write transaction each decision is."""
    with tempfile.TemporaryDirectory(prefix="bench-floor-") as directory:
        conn = sqlite3.connect(f"{directory}/floor.sqlite", isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("CREATE TABLE floor (n INTEGER)")
            execute, numbers = conn.execute, itertools.count()

            def insert() -> None:
                execute("BEGIN IMMEDIATE")
                execute("INSERT INTO floor VALUES (?)", (next(numbers),))
                execute("COMMIT")

            return [measure(insert, (), p["seconds"])]
        finally:
            conn.close()


def floor_postgres(_pl: Any, p: Row) -> list[Row]:
    """One autocommitted ``INSERT`` into a logged table, on a connection from a ``psycopg_pool`` pool:
    the one-statement transaction a ``PostgresBucket`` decision is, without its logic."""
    from psycopg_pool import ConnectionPool

    table, numbers = unique("bench_floor"), itertools.count()
    with ConnectionPool(p["dsn"], min_size=1, max_size=2, kwargs={"autocommit": True}, open=True) as pool:
        with pool.connection() as conn:
            conn.execute(f"CREATE TABLE {table} (n bigint)")
        query = f"INSERT INTO {table} VALUES (%s)"

        def insert() -> None:
            with pool.connection() as conn:
                conn.execute(query, (next(numbers),))

        try:
            return [measure(insert, (), p["seconds"])]
        finally:
            with pool.connection() as conn:
                conn.execute(f"DROP TABLE {table}")


# Scenarios.


def sc_acquire(pl: Any, p: Row) -> list[Row]:
    """Admitted acquires of one key, on one backend; for Redis also the round trips per acquire."""
    with contextlib.ExitStack() as stack:
        limiter, client = build(pl, p, three(pl) if p.get("three") else big(pl), stack)
        acquire = limiter.try_acquire
        acquire("k")  # creates tables, loads scripts
        row = measure(acquire, ("k",), p["seconds"], cpu=p["backend"] == "memory")
        if client is None:
            return [row]
        trips, commands, usec = round_trips(client, acquire, 1)
        with redis_floor_call(client) as floor:
            ratio = interleaved(functools.partial(acquire, "k"), floor, p["seconds"])
        return [
            row,
            {"value": ratio, "unit": "x", "extra": "chunks of 50 calls alternating with the floor's"},
            {"value": trips, "unit": "rt", "extra": f"{commands:.0f} server cmds, {usec:.1f} us in script"},
        ]


def round_trips(client: Any, acquire: Callable[..., Any], weight: int, n: int = 200) -> tuple[float, float, float]:
    """Per acquire: client calls (counted in redis-py), commands the server ran and µs it spent in
    scripts (both from INFO commandstats)."""
    calls = [0]
    real = client.execute_command

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return real(*args, **kwargs)

    before = client.info("commandstats")
    client.execute_command = counting
    try:
        for _ in range(n):
            acquire("k", weight)
    finally:
        del client.execute_command
    after = client.info("commandstats")

    def grew(key: str, stat: str) -> int:
        return int(after[key][stat]) - int(before.get(key, {stat: 0})[stat])

    ran = sum(grew(k, "calls") for k in after if k != "cmdstat_info")
    usec = sum(grew(k, "usec") for k in after if k in ("cmdstat_evalsha", "cmdstat_eval"))
    return calls[0] / n, ran / n, usec / n


def sc_rejected(pl: Any, p: Row) -> list[Row]:
    """A full bucket: refusals returning ``False``, then raising ``BucketFullException``."""
    quiet = pl.Limiter(pl.Rate(100, pl.Duration.HOUR), raise_when_fail=False)
    loud = pl.Limiter(pl.Rate(100, pl.Duration.HOUR))
    for _ in range(100):
        quiet.try_acquire("k")
        loud.try_acquire("k")
    assert quiet.try_acquire("k") is False
    full, acquire, ask = pl.BucketFullException, loud.try_acquire, quiet.try_acquire

    # Each as callers write it, in a function of theirs: the two differ only in the limiter's mode.
    def refusing() -> None:
        if not ask("k"):
            pass

    def raising() -> None:
        try:  # noqa: SIM105 - contextlib.suppress would add its own cost
            acquire("k")
        except full:
            pass

    false_row = measure(refusing, (), p["seconds"], cpu=True)
    raise_row = measure(raising, (), p["seconds"], cpu=True)
    ratio = interleaved(raising, refusing, p["seconds"], chunk=2000, cpu=True)

    # The floor of that ratio: the same refusal, then a bare raise of a plain exception caught one
    # function up, which no limiter's raising can undercut.
    class Plain(Exception):
        pass

    def bare() -> None:
        raise Plain(None, None)

    def refusing_then_raise() -> None:
        if not ask("k"):
            pass
        try:  # noqa: SIM105 - as in raising()
            bare()
        except Plain:
            pass

    floor = interleaved(refusing_then_raise, refusing, p["seconds"], chunk=2000, cpu=True)
    alternating = "chunks of 2000 calls, alternating"
    return [
        false_row,
        raise_row,
        {"value": ratio, "unit": "x", "extra": alternating},
        {"value": floor, "unit": "x", "extra": f"{alternating}; a bare raise after the same refusal"},
    ]


def sc_keys(pl: Any, p: Row) -> list[Row]:
    """10 000 keys round-robin through a user factory with one in-memory bucket per key."""
    limiter = pl.Limiter(per_key_factory(pl, lambda name: big(pl)))
    keys = [f"key-{i}" for i in range(10_000)]
    for key in keys:
        limiter.try_acquire(key)
    cycle, acquire = itertools.cycle(keys), limiter.try_acquire
    return [measure(lambda: acquire(next(cycle)), (), p["seconds"], cpu=True)]


def sc_async(pl: Any, p: Row) -> list[Row]:
    """``tasks`` concurrent acquirers on an async limiter, in memory or on Redis."""

    async def main() -> list[Row]:
        async with contextlib.AsyncExitStack() as stack:
            if p["backend"] == "memory":
                # upstream's async in-memory bucket is its sync one behind BucketAsyncWrapper
                limiter = async_limiter(pl, big(pl) if ours(pl) else pl.BucketAsyncWrapper(pl.InMemoryBucket(big(pl))))
            else:
                import redis.asyncio

                client = redis.asyncio.Redis.from_url(p["redis_url"], max_connections=200)
                stack.push_async_callback(client.aclose)
                bucket = await pl.RedisBucket.init(big(pl), client, unique("bench"))
                stack.push_async_callback(bucket.flush)
                limiter = pl.Limiter(bucket)  # v3: an async bucket makes an awaitable limiter
            if hasattr(limiter, "__aenter__"):
                await stack.enter_async_context(limiter)
            await limiter.try_acquire("k")
            return [await ameasure(limiter.try_acquire, p["tasks"], p["seconds"], p["loop"], p["backend"] == "memory")]

    return run_loop(p["loop"], main)


def sc_memory(pl: Any, p: Row) -> list[Row]:
    """Resident memory grown per admitted in-memory item, in a fresh process: what the process pays,
    allocator overhead included, and quick to take even for upstream's copy per unit of weight."""
    weight, n = p["weight"], p["n"]
    limiter = pl.Limiter(pl.Rate(10**7 * weight, pl.Duration.HOUR))  # room for n items of this weight
    acquire = limiter.try_acquire
    acquire("k", weight)
    gc.collect()
    before = resident_bytes()
    for _ in range(n):
        acquire("k", weight)
    gc.collect()
    return [{"value": (resident_bytes() - before) / n, "unit": "B/item"}]


def resident_bytes() -> int:
    """This process's resident set size (Linux)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGESIZE")


def sc_redis_memory(pl: Any, p: Row) -> list[Row]:
    """``MEMORY USAGE`` of every key the bucket made (found by SCAN), per admitted item."""
    import redis

    key, weight, n = unique("benchmem"), p["weight"], p["n"]
    with redis.Redis.from_url(p["redis_url"]) as client:
        bucket = pl.RedisBucket.init(big(pl), client, key)
        limiter = pl.Limiter(bucket)
        for _ in range(n):
            limiter.try_acquire("k", weight)
        keys = list(client.scan_iter(match=f"*{key}*", count=1000))
        used = sum(client.memory_usage(k, samples=0) or 0 for k in keys)
        bucket.flush()
    return [{"value": used / n, "unit": "B/item", "extra": f"{len(keys)} keys"}]


def sc_weight(pl: Any, p: Row) -> list[Row]:
    """Time per acquire of weight 100 over weight 1, alternating, best of three each."""
    with contextlib.ExitStack() as stack:
        limiter, client = build(pl, p, big(pl), stack)
        acquire = limiter.try_acquire
        acquire("k", 1)
        best = {1: float("inf"), 100: float("inf")}
        for _, weight in itertools.product(range(3), (1, 100)):
            run = measure(acquire, ("k", weight), p["seconds"] / 3, cpu=p["backend"] == "memory")
            best[weight] = min(best[weight], run["us"])
        row = {"value": best[100] / best[1], "unit": "x"}
        if client is not None:
            (rt1, cmd1, us1), (rt100, cmd100, us100) = (round_trips(client, acquire, w, 50) for w in (1, 100))
            row["extra"] = f"w1/w100: rt {rt1:g}/{rt100:g}, cmds {cmd1:g}/{cmd100:g}, script us {us1:.0f}/{us100:.0f}"
        return [row]


def sc_waiter(pl: Any, p: Row) -> list[Row]:
    """Key B's wall-clock throughput while a thread or task waits on full key A, as % of B alone.

    Alternates B alone and B beside the waiter, twice each after a warm-up, and compares the best.
    """
    factory = per_key_factory(pl, lambda name: [pl.Rate(1, 200)] if name == "A" else big(pl), p["mode"] == "task")
    seconds, rates = p["seconds"] / 4, {False: 0.0, True: 0.0}
    if p["mode"] == "thread":
        limiter = pl.Limiter(factory, max_delay=1000)
        limiter.try_acquire("A")  # A is full from now on: each later acquire waits ~200 ms
        b_rate(lambda: limiter.try_acquire("B"), seconds / 2)
        for waiting in (False, True, False, True):
            stop = threading.Event()

            def wait_on_a(stop: threading.Event = stop) -> None:
                while not stop.is_set():
                    limiter.try_acquire("A")

            thread = threading.Thread(target=wait_on_a)
            if waiting:
                thread.start()
                time.sleep(0.02)
            rates[waiting] = max(rates[waiting], b_rate(lambda: limiter.try_acquire("B"), seconds))
            stop.set()
            if waiting:
                thread.join()
        return [{"value": 100 * rates[True] / rates[False], "unit": "%"}]

    async def main() -> list[Row]:
        limiter = async_limiter(pl, factory, max_delay=1000)
        await limiter.try_acquire("A")

        async def b_loop(seconds: float) -> float:
            n, start = 0, ns()
            while ns() - start < seconds * 1e9:
                for _ in range(100):
                    await limiter.try_acquire("B")
                n += 100
                await asyncio.sleep(0)  # B's handler does I/O now and then: the waiter gets its turn
            return n * 1e9 / (ns() - start)

        async def wait_on_a() -> None:
            while True:
                await limiter.try_acquire("A")

        await b_loop(seconds / 2)
        for waiting in (False, True, False, True):
            waiter = asyncio.create_task(wait_on_a()) if waiting else None
            await asyncio.sleep(0.02)
            rates[waiting] = max(rates[waiting], await b_loop(seconds))
            if waiter is not None:
                waiter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await waiter
        return [{"value": 100 * rates[True] / rates[False], "unit": "%"}]

    return asyncio.run(main())


def b_rate(acquire: Callable[[], Any], seconds: float) -> float:
    """Wall-clock acquires per second: a blocked stretch counts, unlike in ``measure``."""
    n, start = 0, ns()
    while ns() - start < seconds * 1e9:
        for _ in range(100):
            acquire()
        n += 100
    return n * 1e9 / (ns() - start)


# The accuracy scenario: the promise, measured in real time.

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
            async def reserve(self, item: Any, max_delay: int | None) -> tuple[int, Any]:
                delay, rate = await super().reserve(item, max_delay)
                if rate is None:
                    _stamp.set(item.timestamp + delay)
                return delay, rate

        return AsyncStamping(rates)

    class Stamping(pl.InMemoryBucket):  # type: ignore[misc]
        def reserve(self, item: Any, max_delay: int | None) -> tuple[int, Any]:
            delay, rate = super().reserve(item, max_delay)
            if rate is None:
                _stamp.set(item.timestamp + delay)
            return delay, rate

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


SCENARIOS: dict[str, Callable[[Any, Row], list[Row]]] = {
    "acquire": sc_acquire,
    "rejected": sc_rejected,
    "keys": sc_keys,
    "async": sc_async,
    "memory": sc_memory,
    "redis_memory": sc_redis_memory,
    "weight": sc_weight,
    "waiter": sc_waiter,
    "accuracy": sc_accuracy,
    "floor memory": floor_memory,
    "floor redis": floor_redis,
    "floor sqlite": floor_sqlite,
    "floor postgres": floor_postgres,
}


def worker_main() -> None:
    """Answer one JSON request per stdin line with one JSON line; scenario output goes to stderr."""
    out, sys.stdout = sys.stdout, sys.stderr
    import pyrate_limiter as pl

    for line in sys.stdin:
        request = json.loads(line)
        try:
            answer: Row = {"rows": SCENARIOS[request["scenario"]](pl, request["params"])}
        except Exception as error:  # a backend still being written must not end the run
            answer = {"error": f"{type(error).__name__}: {error}".splitlines()[0][:90]}
        out.write(json.dumps(answer) + "\n")
        out.flush()


# -- driver side -------------------------------------------------------------------------------

FLOORS = {
    "memory": ["floor: Lock acquire+release", "floor: time.time()"],
    "redis": ["floor: Redis EVALSHA, one ZADD"],
    "sqlite": ["floor: SQLite BEGIN IMMEDIATE/INSERT/COMMIT"],
    "postgres": ["floor: PostgreSQL one-statement txn"],
}
"""Each floor's rows; a scenario's floor is their sum (in memory: the lock plus the clock read)."""
LEFT = ("scenario", "target", "extra")  # the table's left-aligned columns


@dataclass
class Spec:
    """One scenario and its rows' labels and targets: ``("ratio", x)``, ours' ops/s at least x times
    upstream's; ``("max", x)`` / ``("min", x)``, ours' value at most / at least x."""

    scenario: str
    params: Row
    labels: list[str]
    targets: list[Target | None]
    floored: bool = True  # judged against its backend's floor, measured after each round
    upstream: bool = True
    rounds: int | None = None
    fresh: bool = False  # a new worker process for each round
    results: dict[str, list[Round]] = field(default_factory=dict)
    floors: dict[str, list[Round]] = field(default_factory=dict)

    @property
    def floor(self) -> str:
        """The key of its floor in FLOORS, or ``""``."""
        return str(self.params.get("backend", "memory")) if self.floored else ""

    @property
    def needs(self) -> str:
        """The server it runs on, or ``""``."""
        backend = str(self.params.get("backend"))
        return backend if backend in ("redis", "postgres") else ""


def specs(quick: bool) -> list[Spec]:
    n = 100_000 if quick else 1_000_000
    rn = 5_000 if quick else 10_000
    s, mem, redis = Spec, {"backend": "memory"}, {"backend": "redis"}
    tasks100 = {"tasks": 100, "loop": "asyncio"}
    rejected = ["rejected -> False", "rejected -> raise", "raise / False time", "floor: False + bare raise / False"]
    rows = [
        s("acquire", mem, ["memory, 1 rate"], [("ratio", 4)]),
        s("acquire", {**mem, "three": True}, ["memory, 3 rates"], [("ratio", 3)]),
        s("rejected", mem, rejected, [("ratio", 4), ("ratio", 4), ("max", 1.5), None]),
        s("keys", mem, ["10 000 keys, factory"], [None]),
        s("async", {**mem, **tasks100}, ["async 100 tasks, asyncio"], [("ratio", 3.5)]),
        s("async", {**mem, **tasks100, "loop": "trio"}, ["async 100 tasks, trio"], [None], upstream=False),
        s(
            "acquire",
            redis,
            ["redis sync, 1 key", "redis sync / floor, interleaved", "redis round trips/acq"],
            [None, ("max", 1.15), ("max", 1)],
        ),
        s("async", {**redis, "tasks": 1, "loop": "asyncio"}, ["redis async, 1 task"], [None]),
        s("async", {**redis, **tasks100}, ["redis async, 100 tasks"], [("ratio", 3)]),
        s("acquire", {"backend": "sqlite"}, ["sqlite file"], [("ratio", 20)]),
        s("acquire", {"backend": "postgres"}, ["postgresql"], [("ratio", 2)]),
    ]
    for weight in (1, 100):
        counts: Row = {"weight": weight, "n": n}
        rows.append(
            s("memory", counts, [f"memory/item, w{weight}"], [("max", 32)], floored=False, rounds=1, fresh=True)
        )
    for weight in (1, 100):
        counts = {**redis, "weight": weight, "n": rn}
        rows.append(
            s("redis_memory", counts, [f"redis memory/item, w{weight}"], [("max", 105)], floored=False, rounds=1)
        )
    for backend in ("memory", "redis", "sqlite", "postgres"):
        weights = {"backend": backend, "seconds": 0.6 if quick else 0.75}
        rows.append(s("weight", weights, [f"w100/w1 time, {backend}"], [("max", 1.1)], floored=False, rounds=3))
    for mode in ("thread", "task"):
        waiter = {"mode": mode, "seconds": 1.2 if quick else 2}
        rows.append(s("waiter", waiter, [f"key B while A waits, {mode}"], [("min", 80)], floored=False, rounds=3))
    for mode, who in (("threads", "4 threads"), ("tasks", "100 tasks")):
        for wait, how in ((False, "polling"), (True, "waiting")):
            run = {"mode": mode, "wait": wait, "windows": 2 if quick else 5}
            labels = [f"accuracy, {who} {how}: most in 1 s", f"accuracy, {who} {how}: % of ideal"]
            limits: list[Target | None] = [("max", ACCURACY_LIMIT), ("min", 98)]
            rows.append(s("accuracy", run, labels, limits, floored=False, rounds=1))
    return rows


class Worker:
    """A worker process of one side, restarted if it dies."""

    def __init__(self, python: str) -> None:
        self.python = python
        self.proc: subprocess.Popen[str] | None = None

    def run(self, scenario: str, params: Row) -> Round:
        if self.proc is None or self.proc.poll() is not None:
            argv = [self.python, str(Path(__file__).resolve()), "--worker"]
            env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
            self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"scenario": scenario, "params": params}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            return f"worker exited with {self.proc.wait()}"
        answer = json.loads(line)
        return answer["rows"] if "rows" in answer else str(answer["error"])

    def close(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(OSError):
                self.proc.communicate(timeout=30)  # closes stdin: the worker ends its loop


@contextlib.contextmanager
def upstream_venv() -> Iterator[str]:
    """The interpreter of a new virtualenv holding upstream 3.9.0, deleted when the block ends."""
    directory = tempfile.mkdtemp(prefix="bench-upstream-")
    try:
        progress("installing pyrate-limiter==3.9.0 in a temporary virtualenv")
        subprocess.run([sys.executable, "-m", "venv", directory], check=True, capture_output=True)
        python = str(Path(directory) / "bin" / "python")
        install = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check", *UPSTREAM_PACKAGES]
        pip = subprocess.run(install, capture_output=True, text=True)
        if pip.returncode != 0:
            raise RuntimeError(f"pip install failed: {pip.stderr.strip().splitlines()[-1:]}")
        yield python
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def progress(text: str, stream: TextIO = sys.stderr) -> None:
    stream.write(f"\r\x1b[K{text}")
    stream.flush()


def pick(results: list[Round], index: int) -> Row | str:
    """The median round of a row, or the error that kept it from running."""
    rows = [r[index] for r in results if not isinstance(r, str) and index < len(r)]
    if not rows:
        return next((r for r in results if isinstance(r, str)), "no result")
    return sorted(rows, key=lambda row: float(row["ops"] if "ops" in row else row["value"]))[len(rows) // 2]


def paired(pairs: Iterable[tuple[Round, Round]], ratio: Callable[[list[Row], list[Row]], float]) -> float | None:
    """The median of ``ratio`` over rounds measured back to back, skipping those that did not run."""
    ratios = [ratio(a, b) for a, b in pairs if not isinstance(a, str) and not isinstance(b, str)]
    return statistics.median(ratios) if ratios else None


def times_floor(spec: Spec, side: str, index: int) -> float | None:
    """A row's µs/op over its floor's, each round against the floor measured right after it."""
    mine = pick(spec.results.get(side, []), index)
    if not spec.floor or not isinstance(mine, dict) or "us" not in mine:
        return None
    return paired(
        zip(spec.results[side], spec.floors[side], strict=True),
        lambda rows, floor: float(rows[index]["us"] / sum(row["us"] for row in floor)),
    )


def side_by_side(rounds: dict[str, list[Round]]) -> list[tuple[Round, Round]]:
    """Ours' and upstream's rounds, paired in the order they ran; none if upstream did not run."""
    return list(zip(rounds["ours"], rounds.get("upstream", []), strict=False))


def ops_ratio(pairs: Iterable[tuple[Round, Round]], index: int) -> float | None:
    """Ours/upstream ops/s, from the rounds of the two sides run back to back."""
    return paired(pairs, lambda a, b: float(a[index]["ops"] / b[index]["ops"]))


def verdict(target: Target | None, mine: Row | str, ratio: float | None, comparing: bool) -> str:
    """``<bound> PASS`` or ``MISS``, or why the row cannot be judged."""
    if target is None:
        return ""
    kind, bound = target
    texts = {"ratio": f">={bound:g}x upstream", "max": f"<={bound:g}"}
    text = texts.get(kind, f">={bound:g}")
    if kind == "ratio" and not comparing:
        return f"{text}: n/a (needs --compare-upstream)"
    value = ratio if kind == "ratio" else None if isinstance(mine, str) else float(mine["value"])
    if value is None:
        return f"{text} n/a"
    passed = value <= bound if kind == "max" else value >= bound
    return f"{text} {'PASS' if passed else 'MISS'}"


def cell(row: Row | str | None) -> str:
    if row is None:
        return "-"
    if isinstance(row, str):
        return f"n/a: {row}"
    if "ops" in row:
        return f"{row['ops']:,.0f}"
    return f"{row['value']:.3g} {row['unit']}"


def both(ours_text: str, upstream_text: str | None) -> str:
    return ours_text if upstream_text is None else f"{ours_text} | {upstream_text}"


def table_line(
    label: str, rounds: dict[str, list[Round]], pairs: list[tuple[Round, Round]], index: int, comparing: bool
) -> dict[str, str]:
    """The cells every row has: ops/s (or value), ratio, µs/op, latencies, extras."""
    mine = pick(rounds["ours"], index)
    theirs = pick(rounds["upstream"], index) if comparing and rounds.get("upstream") else None
    line = {"scenario": label, "ours": cell(mine), "upstream": cell(theirs)}
    if isinstance(mine, dict) and "ops" in mine:
        line["us/op"] = f"{mine['us']:.2f}"
        lat = f"{theirs['p50']:.1f}/{theirs['p99']:.1f}" if isinstance(theirs, dict) else None
        line["p50/p99"] = both(f"{mine['p50']:.1f}/{mine['p99']:.1f}", lat)
        ratio = ops_ratio(pairs, index)
        line["ratio"] = "" if ratio is None else f"{ratio:.2f}x"
    extras = [r.get("extra", "") for r in (mine, theirs) if isinstance(r, dict)]
    line["extra"] = " | ".join(extras) if any(extras) else ""
    return line


def print_table(chosen: list[Spec], comparing: bool) -> None:
    """Floors first, then every scenario's rows; upstream's columns only when compared."""
    lines: list[dict[str, str]] = []
    for kind, labels in FLOORS.items():
        users = [spec for spec in chosen if spec.floor == kind]
        rounds = {side: [r for spec in users for r in spec.floors.get(side, [])] for side in ("ours", "upstream")}
        pairs = [pair for spec in users for pair in side_by_side(spec.floors)]
        lines += [table_line(label, rounds, pairs, i, comparing) for i, label in enumerate(labels) if users]
    for spec in chosen:
        pairs = side_by_side(spec.results)
        for i, label in enumerate(spec.labels):
            line = table_line(label, spec.results, pairs, i, comparing)
            floors = [times_floor(spec, side, i) for side in ("ours", "upstream")]
            if floors[0] is not None:
                line["x floor"] = both(f"{floors[0]:.2f}", f"{floors[1]:.2f}" if floors[1] is not None else None)
            mine = pick(spec.results["ours"], i)
            ratio = ops_ratio(pairs, i) if isinstance(mine, dict) and "ops" in mine else None
            line["target"] = verdict(spec.targets[i], mine, ratio, comparing)
            lines.append(line)
    sides = " (ours | upstream)" if comparing else ""
    head = {"scenario": "scenario", "ours": "ours", "upstream": "upstream", "ratio": "ratio", "us/op": "us/op"}
    head |= {"x floor": f"x floor{sides}", "p50/p99": f"p50/p99 us{sides}", "target": "target", "extra": "extra"}
    if not comparing:
        del head["upstream"], head["ratio"]
    rows = [head, *lines]
    widths = {c: min(max(len(row.get(c, "")) for row in rows), 44) for c in head}
    for row in rows:
        cells = (row.get(c, "").ljust(widths[c]) if c in LEFT else row.get(c, "").rjust(widths[c]) for c in head)
        print("  ".join(cells).rstrip())
    columns = (
        "ours, upstream: ops/s (or the value measured); ratio: ours/upstream ops/s" if comparing else "ours: ops/s"
    )
    print(f"\n{columns}. x floor: us/op over the floor's us/op, measured in the same worker right after")
    print("each round (the median of the rounds' ratios); in memory, the floor is the Lock plus time.time().")


def run_spec(
    spec: Spec, rounds: int, workers: dict[str, Worker], context: Row, down: dict[str, str], title: str
) -> None:
    """Every round of one scenario on each side, alternating the order, each followed by its floor."""
    sides = ["ours", "upstream"] if spec.upstream and "upstream" in workers else ["ours"]
    spec.results = {side: [] for side in sides}
    spec.floors = {side: [] for side in sides} if spec.floor else {}
    floor_params = {**context, "seconds": context["seconds"] / 2}  # a floor is steadier than what it judges
    for r in range(spec.rounds or rounds):
        for side in sides if r % 2 == 0 else sides[::-1]:
            progress(f"{title}: round {r + 1}, {side}")
            reason = down.get(spec.needs) or down.get(side)
            if reason is not None:
                spec.results[side].append(reason)
                if spec.floor:
                    spec.floors[side].append(reason)
                continue
            worker = Worker(workers[side].python) if spec.fresh else workers[side]
            spec.results[side].append(worker.run(spec.scenario, {**context, **spec.params}))
            if spec.floor:
                progress(f"{title}: round {r + 1}, {side}, floor")
                spec.floors[side].append(worker.run(f"floor {spec.floor}", floor_params))
            if spec.fresh:
                worker.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="shorter runs, fewer rounds")
    parser.add_argument("--only", metavar="PATTERN", help="run the scenarios whose label matches this regex")
    parser.add_argument(
        "--compare-upstream", action="store_true", help="also run pyrate-limiter 3.9.0, in a temporary virtualenv"
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker_main()
    seconds, rounds = (0.15, 5) if args.quick else (0.4, 7)
    chosen = [s for s in specs(args.quick) if not args.only or any(re.search(args.only, x, re.I) for x in s.labels)]
    sys.path.insert(0, str(ROOT))
    from tests import servers

    with contextlib.ExitStack() as stack:
        pythons, down = {"ours": sys.executable}, dict[str, str]()
        if args.compare_upstream:
            try:
                pythons["upstream"] = stack.enter_context(upstream_venv())
            except (OSError, RuntimeError, subprocess.CalledProcessError) as error:
                down["upstream"] = f"upstream venv: {error}"
                pythons["upstream"] = ""  # its rows say why
        context: Row = {"seconds": seconds}
        for needs, start in (("redis", servers.redis_server), ("postgres", servers.postgres_server)):
            if any(spec.needs == needs for spec in chosen):
                progress(f"starting {needs}")
                try:
                    server: Any = stack.enter_context(start())
                    context["redis_url" if needs == "redis" else "dsn"] = getattr(server, "url", None) or server.dsn
                except Exception as error:
                    down[needs] = f"{needs}: {error}".splitlines()[0][:80]
        workers = {side: Worker(python) for side, python in pythons.items()}
        for worker in workers.values():
            stack.callback(worker.close)  # before the virtualenv goes
        for number, spec in enumerate(chosen, 1):
            run_spec(spec, rounds, workers, context, down, f"[{number}/{len(chosen)}] {spec.labels[0]}")
        progress("")
    print_table(chosen, args.compare_upstream)
    return None


if __name__ == "__main__":
    main()
