"""Timing primitives the worker measures with: throughput and latency of a call, of concurrent
tasks, and of one call against another in alternating chunks."""

from __future__ import annotations

import asyncio
import gc
import itertools
import os
import statistics
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine

ns = time.perf_counter_ns
Row = dict[str, Any]
_seq = itertools.count()


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
