"""Benchmark this pyrate_limiter against upstream pyrate-limiter 3.9.0, same machine, same run.

    .venv/bin/python scripts/bench.py [--quick] [--only PATTERN] [--no-upstream]

Both packages are imported as ``pyrate_limiter``, so each side runs in its own worker process
(this file with ``--worker``): ours under this interpreter, upstream under ``.bench/upstream-venv``,
made once with ``pip install pyrate-limiter==3.9.0 redis psycopg[pool,binary]``. The scenario code
is the same for both, written against the v3 API.

Timing on a small shared box is noisy, so rounds alternate between the sides (ours, upstream,
upstream, ours, ...), each side's median round is shown, and the ratio is the median of the
ratios of rounds run back to back. In-memory scenarios count the worker thread's CPU time, not
wall time; latencies are wall time. Redis and PostgreSQL are started on loopback by
``tests/servers.py`` and stopped at the end; a backend that is missing or fails shows
``n/a: <reason>`` in its row and the run goes on.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import itertools
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine

ROOT = Path(__file__).resolve().parent.parent
UPSTREAM_VENV = ROOT / ".bench" / "upstream-venv"
UPSTREAM_PACKAGES = ["pyrate-limiter==3.9.0", "redis", "psycopg[pool,binary]"]
ns = time.perf_counter_ns
Row = dict[str, Any]
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


def sc_acquire(pl: Any, p: Row) -> list[Row]:
    """Admitted acquires of one key, on one backend; for Redis also the EVALSHA floor and round trips."""
    with contextlib.ExitStack() as stack:
        limiter, client = build(pl, p, three(pl) if p.get("three") else big(pl), stack)
        acquire = limiter.try_acquire
        acquire("k")  # creates tables, loads scripts
        row = measure(acquire, ("k",), p["seconds"], cpu=p["backend"] == "memory")
        if client is None:
            return [row]
        floor = measure(client.evalsha, (client.script_load("return 1"), 0), p["seconds"])
        trips, commands, usec = round_trips(client, acquire, 1)
        return [
            row,
            floor,
            {"value": 100 * row["us"] / floor["us"], "unit": "%"},
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
    full, acquire = pl.BucketFullException, loud.try_acquire

    def raising() -> None:
        try:  # noqa: SIM105 - what callers write; contextlib.suppress would add its own cost
            acquire("k")
        except full:
            pass

    false_row = measure(quiet.try_acquire, ("k",), p["seconds"], cpu=True)
    raise_row = measure(raising, (), p["seconds"], cpu=True)
    return [false_row, raise_row, {"value": raise_row["us"] / false_row["us"], "unit": "x"}]


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
    """Bytes per admitted in-memory item (tracemalloc), in a fresh process."""
    weight, n = p["weight"], p["n"]
    limiter = pl.Limiter(pl.Rate(10**7 * weight, pl.Duration.HOUR))  # room for n items of this weight
    acquire = limiter.try_acquire
    acquire("k", weight)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for _ in range(n):
        acquire("k", weight)
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return [{"value": used / n, "unit": "B/item"}]


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


SCENARIOS: dict[str, Callable[[Any, Row], list[Row]]] = {
    "acquire": sc_acquire,
    "rejected": sc_rejected,
    "keys": sc_keys,
    "async": sc_async,
    "memory": sc_memory,
    "redis_memory": sc_redis_memory,
    "weight": sc_weight,
    "waiter": sc_waiter,
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


@dataclass
class Spec:
    """One scenario: its rows' labels and targets (``("ratio", x)``: ours >= x times upstream's
    ops/s; ``("max", x)`` / ``("min", x)``: ours' value at most / at least x)."""

    scenario: str
    params: Row
    labels: list[str]
    targets: list[tuple[str, float] | None]
    needs: str = ""
    upstream: bool = True
    rounds: int | None = None
    fresh: bool = False
    results: dict[str, list[list[Row] | str]] = field(default_factory=dict)


def specs(quick: bool) -> list[Spec]:
    n = 100_000 if quick else 1_000_000
    rn = 5_000 if quick else 10_000
    s = Spec
    rows = [
        s("acquire", {"backend": "memory"}, ["memory, 1 rate"], [("ratio", 4)]),
        s("acquire", {"backend": "memory", "three": True}, ["memory, 3 rates"], [("ratio", 3)]),
        s("rejected", {}, ["rejected -> False", "rejected -> raise", "raise / False time"],
          [("ratio", 4), ("ratio", 4), ("max", 1.5)]),
        s("keys", {}, ["10 000 keys, factory"], [None]),
        s("async", {"backend": "memory", "tasks": 100, "loop": "asyncio"}, ["async 100 tasks, asyncio"],
          [("ratio", 3.5)]),
        s("async", {"backend": "memory", "tasks": 100, "loop": "trio"}, ["async 100 tasks, trio"], [None],
          upstream=False),
        s("acquire", {"backend": "redis"}, ["redis sync, 1 key", "redis bare EVALSHA floor",
          "redis sync vs floor", "redis round trips/acq"], [None, None, ("max", 115), ("max", 1)], "redis"),
        s("async", {"backend": "redis", "tasks": 1, "loop": "asyncio"}, ["redis async, 1 task"], [None], "redis"),
        s("async", {"backend": "redis", "tasks": 100, "loop": "asyncio"}, ["redis async, 100 tasks"],
          [("ratio", 3)], "redis"),
        s("acquire", {"backend": "sqlite"}, ["sqlite file"], [("ratio", 20)]),
        s("acquire", {"backend": "postgres"}, ["postgresql"], [("ratio", 2)], "postgres"),
        s("memory", {"weight": 1, "n": n}, ["memory/item, w1"], [("max", 32)], rounds=1, fresh=True),
        s("memory", {"weight": 100, "n": n}, ["memory/item, w100"], [("max", 32)], rounds=1, fresh=True),
        s("redis_memory", {"weight": 1, "n": rn}, ["redis memory/item, w1"], [("max", 105)], "redis", rounds=1),
        s("redis_memory", {"weight": 100, "n": rn}, ["redis memory/item, w100"], [("max", 105)], "redis", rounds=1),
    ]
    for backend, needs in (("memory", ""), ("redis", "redis"), ("sqlite", ""), ("postgres", "postgres")):
        weight = {"backend": backend, "seconds": 0.6 if quick else 1.5}
        rows.append(s("weight", weight, [f"w100/w1 time, {backend}"], [("max", 1.1)], needs, rounds=3))
    for mode in ("thread", "task"):
        waiter = {"mode": mode, "seconds": 1.2 if quick else 3}
        rows.append(s("waiter", waiter, [f"key B while A waits, {mode}"], [("min", 80)], rounds=3))
    return rows


class Worker:
    """A worker process of one side, restarted if it dies."""

    def __init__(self, python: str) -> None:
        self.python = python
        self.proc: subprocess.Popen[str] | None = None

    def run(self, scenario: str, params: Row) -> list[Row] | str:
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


def upstream_python() -> str:
    """The upstream venv's interpreter, making the venv first if needed."""
    python = UPSTREAM_VENV / "bin" / "python"
    check = [str(python), "-c", "import importlib.metadata as m; print(m.version('pyrate-limiter'))"]
    if python.exists() and subprocess.run(check, capture_output=True, text=True).stdout.strip() == "3.9.0":
        return str(python)
    progress("creating .bench/upstream-venv (once)")
    shutil.rmtree(UPSTREAM_VENV, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(UPSTREAM_VENV)], check=True, capture_output=True)
    install = [str(python), "-m", "pip", "install", "-q", *UPSTREAM_PACKAGES]
    pip = subprocess.run(install, capture_output=True, text=True)
    if pip.returncode != 0:
        raise RuntimeError(f"pip install failed: {pip.stderr.strip().splitlines()[-1:]}")
    return str(python)


def progress(text: str, stream: TextIO = sys.stderr) -> None:
    stream.write(f"\r\x1b[K{text}")
    stream.flush()


def pick(results: list[list[Row] | str], index: int) -> Row | str:
    """The median round of a row, or the error that kept it from running."""
    rows = [r[index] for r in results if not isinstance(r, str) and index < len(r)]
    if not rows:
        return next((r for r in results if isinstance(r, str)), "no result")
    return sorted(rows, key=lambda row: float(row["ops"] if "ops" in row else row["value"]))[len(rows) // 2]


def paired_ratio(spec: Spec, index: int) -> float | None:
    """Median over rounds of ours/upstream ops, each pair run back to back under the same load."""
    pairs = zip(spec.results["ours"], spec.results["upstream"], strict=False)
    ratios = [a[index]["ops"] / b[index]["ops"] for a, b in pairs if not isinstance(a, str) and not isinstance(b, str)]
    return statistics.median(ratios) if ratios else None


def cell(row: Row | str | None) -> str:
    if row is None:
        return "-"
    if isinstance(row, str):
        return f"n/a: {row}"
    if "ops" in row:
        return f"{row['ops']:,.0f}"
    return f"{row['value']:.3g} {row['unit']}"


def verdict(target: tuple[str, float] | None, mine: Row | str, ratio: float | None) -> str:
    if target is None:
        return ""
    kind, bound = target
    text = {"ratio": f">={bound:g}x", "max": f"<={bound:g}", "min": f">={bound:g}"}[kind]
    value = ratio if kind == "ratio" else None if isinstance(mine, str) else float(mine["value"])
    if value is None:
        return f"{text} n/a"
    passed = value >= bound if kind in ("ratio", "min") else value <= bound
    return f"{text} {'PASS' if passed else 'MISS'}"


def print_table(all_specs: list[Spec], with_upstream: bool) -> None:
    head = ("scenario", "ours", "upstream", "ratio", "us/op", "p50/p99 us (ours | upstream)", "target", "extra")
    lines = [head]
    for spec in all_specs:
        for i, label in enumerate(spec.labels):
            mine = pick(spec.results["ours"], i)
            theirs = pick(spec.results["upstream"], i) if spec.upstream and with_upstream else None
            ratio = paired_ratio(spec, i) if isinstance(mine, dict) and "ops" in mine else None
            us = lat = ""
            if isinstance(mine, dict) and "ops" in mine:
                us, lat = f"{mine['us']:.2f}", f"{mine['p50']:.1f}/{mine['p99']:.1f}"
                if isinstance(theirs, dict):
                    lat += f" | {theirs['p50']:.1f}/{theirs['p99']:.1f}"
            extras = [r.get("extra", "") for r in (mine, theirs) if isinstance(r, dict)]
            extra = " | ".join(extras) if any(extras) else ""
            ratio_text = "" if ratio is None else f"{ratio:.2f}x"
            judged = verdict(spec.targets[i], mine, ratio)
            lines.append((label, cell(mine), cell(theirs), ratio_text, us, lat, judged, extra))
    widths = [min(max(len(line[c]) for line in lines), 44) for c in range(len(head))]
    for line in lines:
        print("  ".join(text.ljust(width) if c == 0 or c >= 6 else text.rjust(width)
                        for c, (text, width) in enumerate(zip(line, widths, strict=True))).rstrip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="shorter runs, fewer rounds")
    parser.add_argument("--only", metavar="PATTERN", help="run the scenarios whose label matches this regex")
    parser.add_argument("--no-upstream", action="store_true", help="measure ours only")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker_main()
    seconds, rounds = (0.15, 5) if args.quick else (0.4, 11)
    chosen = [s for s in specs(args.quick) if not args.only or any(re.search(args.only, x, re.I) for x in s.labels)]
    pythons = {"ours": sys.executable}
    down: dict[str, str] = {}
    if not args.no_upstream:
        try:
            pythons["upstream"] = upstream_python()
        except (OSError, RuntimeError, subprocess.CalledProcessError) as error:
            down["upstream"] = f"upstream venv: {error}"
    sys.path.insert(0, str(ROOT))
    from tests import servers

    with contextlib.ExitStack() as stack:
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
            stack.callback(worker.close)
        for number, spec in enumerate(chosen, 1):
            sides = ["ours", "upstream"] if spec.upstream else ["ours"]
            spec.results = {side: [] for side in ("ours", "upstream")}
            for r in range(spec.rounds or rounds):
                for side in sides if r % 2 == 0 else sides[::-1]:
                    progress(f"[{number}/{len(chosen)}] {spec.labels[0]}: round {r + 1}, {side}")
                    reason = down.get(spec.needs) or down.get(side)
                    if reason is None and side not in workers:
                        reason = "not run (--no-upstream)"
                    if reason is not None:
                        spec.results[side].append(reason)
                        continue
                    worker = Worker(pythons[side]) if spec.fresh else workers[side]
                    spec.results[side].append(worker.run(spec.scenario, {**context, **spec.params}))
                    if spec.fresh:
                        worker.close()
        progress("")
    print_table(chosen, "upstream" in pythons)
    return None


if __name__ == "__main__":
    main()
