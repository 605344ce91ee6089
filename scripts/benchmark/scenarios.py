"""The throughput, memory, weight and waiter scenarios, run in the worker against either library
through the v3 API; the accuracy scenario has a module of its own."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import itertools
import os
import statistics
import threading
import time
from typing import TYPE_CHECKING, Any

from .floors import postgres_tasks_floor, redis_floor_call, redis_tasks_floor
from .limiters import async_limiter, big, build, ours, per_key_factory, three
from .measure import ameasure, interleaved, measure, ns, run_loop, unique

if TYPE_CHECKING:
    from collections.abc import Callable

    from .measure import Row


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


def sc_v3_async(pl: Any, p: Row) -> list[Row]:
    """3.x's async spelling, as 3.x users write it: ``Limiter(BucketAsyncWrapper(InMemoryBucket(...)))``
    and ``await limiter.try_acquire_async(...)`` from ``tasks`` tasks; ours also against its native
    ``AsyncLimiter`` on the same work, in alternating rounds."""

    async def main() -> list[Row]:
        v3 = pl.Limiter(pl.BucketAsyncWrapper(pl.InMemoryBucket(big(pl))))
        await v3.try_acquire_async("k")
        row = await ameasure(v3.try_acquire_async, p["tasks"], p["seconds"], p["loop"], True)
        if not ours(pl):
            return [row, {"value": float("nan"), "unit": "x native"}]
        native = pl.AsyncLimiter(big(pl))
        half, rounds = p["seconds"] / 2, {"v3": [row["ops"]], "native": []}
        for _ in range(2):  # alternating, so that a noisy stretch hits both
            rounds["native"].append((await ameasure(native.try_acquire, p["tasks"], half, p["loop"], True))["ops"])
            rounds["v3"].append((await ameasure(v3.try_acquire_async, p["tasks"], half, p["loop"], True))["ops"])
        share = statistics.median(rounds["v3"]) / statistics.median(rounds["native"])
        return [row, {"value": share, "unit": "x native"}]

    return run_loop(p["loop"], main)


def sc_async(pl: Any, p: Row) -> list[Row]:
    """``tasks`` concurrent acquirers on an async limiter, in memory, on Redis or on PostgreSQL.

    PostgreSQL: ours on an async pool of 4; upstream's bucket is sync only, behind
    ``BucketAsyncWrapper``. On Redis and PostgreSQL the second row is the first's ops/s over the
    ops/s of the tasks floor (``floors.floor_redis_tasks``, ``floors.floor_postgres_tasks``),
    measured right after in the same loop.
    """
    if p["backend"] == "postgres":
        return run_loop(p["loop"], functools.partial(postgres_async, pl, p))

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
            row = await ameasure(limiter.try_acquire, p["tasks"], p["seconds"], p["loop"], p["backend"] == "memory")
        if p["backend"] == "memory" or p["tasks"] == 1:  # one task: its x floor column judges it
            return [row]
        (floor,) = await redis_tasks_floor(p["redis_url"], p["tasks"], p["seconds"] / 2)
        return [row, {"value": row["ops"] / floor["ops"], "unit": "x", "extra": "ops/s over the tasks floor's"}]

    return run_loop(p["loop"], main)


async def postgres_async(pl: Any, p: Row) -> list[Row]:
    """The PostgreSQL rows of ``sc_async``."""
    from psycopg_pool import AsyncConnectionPool, ConnectionPool

    async with contextlib.AsyncExitStack() as stack:
        if ours(pl):
            pool: Any = AsyncConnectionPool(p["dsn"], min_size=4, max_size=4, open=False)
            await stack.enter_async_context(pool)
            limiter = pl.AsyncLimiter(pl.AsyncPostgresBucket(pool, unique("bench"), big(pl)))
            await stack.enter_async_context(limiter)
        else:
            pool = stack.enter_context(ConnectionPool(p["dsn"], min_size=4, max_size=4, open=True))
            limiter = pl.Limiter(pl.BucketAsyncWrapper(pl.PostgresBucket(pool, unique("bench"), big(pl))))
        await limiter.try_acquire("k")  # creates the table
        row = await ameasure(limiter.try_acquire, p["tasks"], p["seconds"], p["loop"], False)
    (floor,) = await postgres_tasks_floor(p["dsn"], p["tasks"], p["seconds"] / 2)
    return [row, {"value": row["ops"] / floor["ops"], "unit": "x", "extra": "ops/s over the tasks floor's"}]


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
        limiter = pl.Limiter(factory, max_delay=1000)  # v3: a factory of async buckets follows them
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
