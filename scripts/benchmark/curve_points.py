"""The points of ``--curves``, run in the worker: time per acquire and memory at one size of one curve
(live entries, keys, weight) or throughput at one number of callers (tasks, threads), on one backend."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import random
import statistics
import threading
import time
from typing import TYPE_CHECKING, Any

from .curve_logs import LOGS, used_memory
from .limiters import per_key_factory
from .measure import ns, unique
from .scenarios import resident_bytes

if TYPE_CHECKING:
    from collections.abc import Callable

    from typing_extensions import Self

    from .measure import Row

CHUNK = 10
"""Acquires timed together: each chunk's mean is one sample, and a point reports their median."""
STRETCHES = 10
"""A point is timed in this many stretches, alternating with as many of its reference (the curve's
first point, set up in the same worker): a burst of another process's work on this small machine
slows both alike, so the median of their stretch-by-stretch ratio is what the verdict reads."""

WEIGHT_ENTRIES = 10_000  # in the log along the weight curve: enough for its memory to be read


def calls_of(p: Row) -> int:
    """Acquires a point times (and its reference as many): more in memory, where they are cheap."""
    return int(p["memory_calls"] if p["backend"] in ("memory", "floor") else p["calls"])


def entries_rates(pl: Any) -> list[Any]:
    return [pl.Rate(10**7, pl.Duration.HOUR)]


def weight_rates(pl: Any) -> list[Any]:
    """Room for the heaviest point's fill and timed acquires: 10**6 x ~10**5 units."""
    return [pl.Rate(10**15, pl.Duration.HOUR)]


def pt_entries(pl: Any, p: Row) -> list[Row]:
    """Acquires of weight 1 on one key whose log already holds ``x`` live entries; reference: 10."""
    return [log_point(pl, p, entries_rates(pl), (p["x"], 1), (10, 1))]


def pt_weight(pl: Any, p: Row) -> list[Row]:
    """Acquires of weight ``x`` on one key whose log holds ``WEIGHT_ENTRIES`` entries of that weight;
    reference: weight 1."""
    return [log_point(pl, p, weight_rates(pl), (WEIGHT_ENTRIES, p["x"]), (WEIGHT_ENTRIES, 1))]


def log_point(pl: Any, p: Row, rates: list[Any], shape: tuple[int, int], reference: tuple[int, int]) -> Row:
    """Fill one key's log with ``shape`` = (entries, weight), its memory measured, and another key's
    with ``reference``; then time both, interleaved (see ``Rounds`` and ``interleave``)."""
    with contextlib.ExitStack() as stack:
        log, other = (LOGS[p["backend"]](pl, p, rates, stack) for _ in range(2))
        for each in (log, other):
            each.fill(CHUNK, 1)  # the first use's costs (script state, table pages) are no entry's
            each.clear()
        memory = log.measured_fill(*shape)
        other.fill(*reference)
        mine, theirs = Rounds(log, *shape, calls_of(p)), Rounds(other, *reference, calls_of(p))
        row = interleave(mine.chunk, theirs.chunk, calls_of(p))
        entries = log.entries(shape[1])
    how = "CPU time" if log.cpu else "wall time"
    extra = f"{mine.rounds} rounds of {mine.per_round}, {how}; log ends at {entries} entries"
    return {**row, "memory": memory, "per": memory / shape[0], "how": log.memory_how, "extra": extra}


class Rounds:
    """Chunks of acquires on a log of ``n`` entries, in rounds of ``max(10, n / 10)`` acquires (at most
    ``calls``): the log holds between ``n`` and ``1.1 n`` entries (``n + 10`` for the smallest), and is
    emptied and filled again, untimed, before each further round."""

    def __init__(self, log: Any, n: int, weight: int, calls: int) -> None:
        self.log, self.n, self.weight = log, n, weight
        self.per_round = max(CHUNK, min(n // 10, calls) // CHUNK * CHUNK)
        self.left, self.rounds = self.per_round // CHUNK, 1
        self.clock = time.thread_time_ns if log.cpu else ns
        self.overhead = min(-self.clock() + self.clock() for _ in range(200))

    def chunk(self) -> float:
        """ns per acquire over one chunk."""
        if not self.left:
            self.log.fill(self.n, self.weight)
            self.left, self.rounds = self.per_round // CHUNK, self.rounds + 1
        self.left -= 1
        acquire, weight, clock = self.log.acquire, self.weight, self.clock
        start = clock()
        for _ in range(CHUNK):
            acquire("k", weight)
        return (clock() - start - self.overhead) / CHUNK


def interleave(point: Callable[[], float], reference: Callable[[], float], calls: int) -> Row:
    """``calls`` acquires of each, in ``STRETCHES`` alternating stretches: the point's and the
    reference's median µs per acquire, and the median of their ratios stretch by stretch."""
    per = max(1, calls // CHUNK // STRETCHES)
    mine, theirs, ratios = list[float](), list[float](), list[float]()
    gc.collect()
    for i in range(STRETCHES):
        if i % 2:
            theirs_now = [reference() for _ in range(per)]
            mine_now = [point() for _ in range(per)]
        else:
            mine_now = [point() for _ in range(per)]
            theirs_now = [reference() for _ in range(per)]
        mine += mine_now
        theirs += theirs_now
        ratios.append(statistics.median(mine_now) / max(statistics.median(theirs_now), 1e-3))
    us = statistics.median(mine) / 1000
    return {"us": us, "ops": 1e6 / us, "ref_us": statistics.median(theirs) / 1000, "ratio": statistics.median(ratios)}


def pt_keys(pl: Any, p: Row) -> list[Row]:
    """``x`` keys with one item each, routed by a v3 ``BucketFactory``; acquires go to random keys.
    Reference: the same routing with one key. Backend ``floor``: a dict of one ``Lock`` per key, each
    acquire a lookup, the key's lock and ``time.time()`` (touching as many objects at random)."""
    k, calls, rng = p["x"], calls_of(p), random.Random(18)
    names = [f"key-{i}" for i in range(k)]  # the caller's strings, made before memory is read
    with contextlib.ExitStack() as stack:
        if p["backend"] in ("memory", "floor"):
            if p["backend"] == "floor":
                limiters: list[Any] = [LockPerKey(), LockPerKey()]
            else:
                limiters = [pl.Limiter(per_key_factory(pl, lambda name: entries_rates(pl))) for _ in range(2)]
                for limiter in limiters:
                    stack.callback(limiter.bucket_factory.close)
            gc.collect()
            before = resident_bytes()
            gc.disable()  # setup, untimed: 10**6 buckets' worth of collections would double it
            try:
                for name in names:
                    limiters[0].try_acquire(name)
            finally:
                gc.enable()
            gc.collect()
            memory, how = resident_bytes() - before, "process RSS"
            targets = rng.choices(names, k=calls)
        else:
            client, memory = redis_keys(pl, p, names, stack)
            limiters = [pl.Limiter(redis_per_key(pl, client)) for _ in range(2)]
            how = "Redis used_memory"
            targets = rng.sample(names, min(k, 2000))
            for name in targets:  # the factory makes the Python side of these buckets, untimed
                limiters[0].try_acquire(name)
            targets = [targets[i % len(targets)] for i in range(calls)]
        limiters[1].try_acquire("reference")
        cpu = p["backend"] != "redis"
        row = interleave(Keys(limiters[0], targets, cpu).chunk, Keys(limiters[1], ["reference"], cpu).chunk, calls)
    extra = f"{calls} acquires on {len(set(targets))} random keys"
    return [{**row, "memory": memory, "per": memory / k, "how": how, "extra": extra}]


class LockPerKey:
    """The keys curve's floor: a ``Lock`` per key, made on first use."""

    def __init__(self) -> None:
        self.locks: dict[str, threading.Lock] = {}

    def try_acquire(self, name: str) -> None:
        lock = self.locks.get(name)
        if lock is None:
            lock = self.locks[name] = threading.Lock()
        lock.acquire()
        time.time()
        lock.release()


class Keys:
    """Chunks of acquires going round ``targets``."""

    def __init__(self, limiter: Any, targets: list[str], cpu: bool) -> None:
        self.acquire, self.next = limiter.try_acquire, 0
        self.targets = targets * CHUNK if len(targets) % CHUNK else targets  # every chunk a whole one
        self.clock = time.thread_time_ns if cpu else ns
        self.overhead = min(-self.clock() + self.clock() for _ in range(200))

    def chunk(self) -> float:
        """ns per acquire over one chunk."""
        first = self.next % len(self.targets)
        names = self.targets[first : first + CHUNK]
        self.next += CHUNK
        acquire, clock = self.acquire, self.clock
        start = clock()
        for name in names:
            acquire(name)
        return (clock() - start - self.overhead) / CHUNK


def redis_keys(pl: Any, p: Row, names: list[str], stack: contextlib.ExitStack) -> tuple[Any, int]:
    """A client, and the memory that ``names`` took as keys filled on the server, one item each, in
    pipelined calls of the bucket's script."""
    import redis

    from pyrate_limiter._drivers.redis import OPS, SHA, request, state_key

    client = stack.enter_context(redis.Redis.from_url(p["redis_url"]))
    client.flushdb()  # the benchmark's own server: nothing else lives there
    stack.callback(client.flushdb)
    rates, now = entries_rates(pl), time.time_ns() // 1_000_000
    rule = pl.RedisBucket.init(rates, client, "template")._rule  # loads the script; the rates as sent
    before, op = used_memory(client), OPS["reserve"]
    connection, sent = client.connection_pool.get_connection(), 0
    try:
        # Each batch is sent before the replies to the one before it are read: the server works
        # while this process packs.
        for first in [*range(0, len(names), 2000), len(names)]:
            commands = [
                ("EVALSHA", SHA, 2, name, state_key(name), op + request(now, 1, -1, name) + rule)
                for name in names[first : first + 2000]
            ]
            if commands:
                connection.send_packed_command(connection.pack_commands(commands))
            for _ in range(sent):
                connection.read_response()
            sent = len(commands)
    finally:
        client.connection_pool.release(connection)
    memory = used_memory(client) - before
    if client.dbsize() != 2 * len(names):
        raise RuntimeError(f"filled {len(names)} keys, the server holds {client.dbsize()} (two a bucket)")
    return client, memory


def redis_per_key(pl: Any, client: Any) -> Any:
    """A v3 ``BucketFactory`` making one ``RedisBucket`` per name on first use; no leak scheduled,
    since Redis expires idle keys itself."""
    rates = entries_rates(pl)
    return per_key_factory(pl, lambda name: rates, make=lambda name, rates: pl.RedisBucket(rates, client, name))


def pt_tasks(pl: Any, p: Row) -> list[Row]:
    """For each number of tasks in ``xs``: that many asyncio tasks, each acquiring then yielding to the
    loop (as a handler doing I/O would), on one key; acquires per wall-clock second. The numbers
    take turns, ``rounds`` times, so that the machine's noise spreads over all of them; each row is
    one number's median. Backend ``floor``: the loop's own cost, the same tasks yielding, no acquire."""

    async def main() -> dict[int, list[float]]:
        async with contextlib.AsyncExitStack() as stack:
            if p["backend"] == "floor":
                limiter: Any = NoLimiter()
            elif p["backend"] == "memory":
                limiter = pl.AsyncLimiter(entries_rates(pl))
            else:
                import redis.asyncio

                client = redis.asyncio.Redis.from_url(p["redis_url"])
                stack.push_async_callback(client.aclose)
                bucket = await pl.AsyncRedisBucket.init(entries_rates(pl), client, unique("curve"))
                stack.push_async_callback(bucket.flush)
                limiter = pl.AsyncLimiter(bucket)
            await stack.enter_async_context(limiter)
            acquire = limiter.try_acquire
            await acquire("k")
            rates: dict[int, list[float]] = {x: [] for x in p["xs"]}
            for _, x in itertools.product(range(p["rounds"]), p["xs"]):
                done = [0]

                async def caller(stop: int, done: list[int] = done) -> None:
                    while ns() < stop:
                        await acquire("k")
                        done[0] += 1
                        await asyncio.sleep(0)

                start = ns()
                await asyncio.gather(*(caller(start + int(p["seconds"] * 1e9)) for _ in range(x)))
                rates[x].append(done[0] * 1e9 / (ns() - start))
            return rates

    how = "wall time, from the first task's start to the last one's end"
    return [throughput_row(runs, how) for runs in asyncio.run(main()).values()]


class NoLimiter:
    """The tasks curve's floor: an async context whose acquire admits at once, without suspending."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        return None

    async def try_acquire(self, name: str) -> bool:
        return True


def pt_threads(pl: Any, p: Row) -> list[Row]:
    """For each number of threads in ``xs``: that many threads acquiring on one key of one sync
    limiter; acquires per wall-clock second, the numbers taking turns as in ``pt_tasks``. Backend
    ``floor``: what every in-memory acquire does at the least, a ``Lock`` acquire, ``time.time()``
    and release, from as many threads."""
    with contextlib.ExitStack() as stack:
        if p["backend"] == "memory":
            acquire: Callable[[str], Any] = pl.Limiter(entries_rates(pl)).try_acquire
        elif p["backend"] == "floor":
            acquire = lock_and_clock()
        else:
            from .limiters import build

            acquire = build(pl, p, entries_rates(pl), stack)[0].try_acquire
        acquire("k")
        rates: dict[int, list[float]] = {x: [] for x in p["xs"]}
        for _, x in itertools.product(range(p["rounds"]), p["xs"]):
            counts, stop, ready = [0] * x, threading.Event(), threading.Barrier(x + 1)

            def caller(i: int, counts: list[int] = counts, stop: Any = stop, ready: Any = ready) -> None:
                ready.wait()
                n = 0
                while not stop.is_set():
                    for _ in range(8):
                        acquire("k")
                    n += 8
                counts[i] = n

            threads = [threading.Thread(target=caller, args=(i,)) for i in range(x)]
            for thread in threads:
                thread.start()
            ready.wait()
            start = ns()
            time.sleep(p["seconds"])
            stop.set()
            for thread in threads:
                thread.join()
            rates[x].append(sum(counts) * 1e9 / (ns() - start))
    how = "wall time, until every thread has finished its last acquires"
    return [throughput_row(runs, how) for runs in rates.values()]


def lock_and_clock() -> Callable[[str], None]:
    lock, now = threading.Lock(), time.time

    def floor(name: str) -> None:
        lock.acquire()
        now()
        lock.release()

    return floor


def throughput_row(rates: list[float], how: str) -> Row:
    ops = statistics.median(rates)
    spread = f"runs {min(rates):,.0f}..{max(rates):,.0f}/s"
    return {"us": 1e6 / ops, "ops": ops, "extra": f"median of {len(rates)} runs ({spread}), {how}"}
