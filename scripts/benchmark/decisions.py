"""The decision API's scenarios, run in the worker against ours only (3.9.0 has none of it): ``state()``
against a refusal, ``reserve()`` then ``cancel()``, and what a per-key limiter keeps after its leak."""

from __future__ import annotations

import contextlib
import ctypes
import gc
from typing import TYPE_CHECKING, Any

from .limiters import build
from .measure import ameasure, interleaved, measure, run_loop
from .scenarios import resident_bytes

if TYPE_CHECKING:
    from .measure import Row

FULL = 100  # a bucket of Rate(FULL, 1 h), filled: every later item is refused, or waits about an hour
MIB = 1 << 20


def sc_state(pl: Any, p: Row) -> list[Row]:
    """``state()`` on a full bucket, then its time over a refused ``try_acquire`` (returning ``False``)
    on the same bucket, in alternating chunks: reading where a name stands must not cost more than
    being refused."""
    with contextlib.ExitStack() as stack:
        limiter, _client = build(pl, p, [pl.Rate(FULL, pl.Duration.HOUR)], stack, raise_when_fail=False)
        for _ in range(FULL):
            limiter.try_acquire("k")
        assert limiter.try_acquire("k") is False
        assert limiter.state("k").retry_after_ms > 0
        state, acquire, memory = limiter.state, limiter.try_acquire, p["backend"] == "memory"

        def read() -> None:
            state("k")

        def refused() -> None:
            if not acquire("k"):
                pass

        row = measure(read, (), p["seconds"], cpu=memory)
        chunk = 2000 if memory else 50
        ratio = interleaved(read, refused, p["seconds"], chunk=chunk, cpu=memory)
        alternating = f"chunks of {chunk} calls, alternating"
        return [row, {"value": ratio, "unit": "x", "extra": alternating}]


def sc_reserve(pl: Any, p: Row) -> list[Row]:
    """``reserve()`` on a full in-memory bucket, a place about an hour off, then ``cancel()``, sync or
    ``mode="async"`` on asyncio; then how many units the bucket holds more than before the loop, which
    is 0 if every cancel gave its place back."""
    rates, max_delay = [pl.Rate(FULL, pl.Duration.HOUR)], 2 * pl.Duration.HOUR
    if p["mode"] == "sync":
        limiter = pl.Limiter(rates)
        (bucket,) = limiter.buckets()
        for _ in range(FULL):
            limiter.try_acquire("k")
        before, reserve = bucket.count(), limiter.reserve
        first = reserve("k", max_delay=max_delay)
        assert first.delay_ms > 0  # it has to wait: a place, not an admission
        first.cancel()

        def reserve_cancel() -> None:
            reserve("k", max_delay=max_delay).cancel()

        return [measure(reserve_cancel, (), p["seconds"], cpu=True), grown(bucket.count() - before, before)]

    async def main() -> list[Row]:
        async with pl.AsyncLimiter(rates) as limiter:
            (bucket,) = limiter.buckets()
            for _ in range(FULL):
                await limiter.try_acquire("k")
            before, reserve = await bucket.count(), limiter.reserve
            first = await reserve("k", max_delay=max_delay)
            assert first.delay_ms > 0
            await first.cancel()

            async def reserve_cancel(name: str) -> None:
                await (await reserve(name, max_delay=max_delay)).cancel()

            row = await ameasure(reserve_cancel, 1, p["seconds"], "asyncio", True)
            return [row, grown(await bucket.count() - before, before)]

    return run_loop("asyncio", main)


def grown(units: int, before: int) -> Row:
    return {"value": units, "unit": "units", "extra": f"bucket count {before} before the loop"}


def sc_per_key_memory(pl: Any, p: Row) -> list[Row]:
    """``Limiter.per_key([Rate(1, 1000)])`` in memory, each of ``n`` new names acquired once, then the
    leak run once the injected clock has passed the interval: the resident memory grown over the
    fresh worker's at its peak (``VmHWM``) and after the leak, in MiB, once glibc has handed its
    free heap back (``malloc_trim``; the figure before it is in the row's note)."""
    clock = StillClock()
    limiter = pl.Limiter.per_key([pl.Rate(1, 1000)], clock=clock)
    (bucket,) = limiter.buckets()
    limiter.close()  # the leak below is this scenario's, at the clock's time, not a thread's
    acquire = limiter.try_acquire
    acquire("warm-up")
    gc.collect()
    before = resident_bytes()
    gc.disable()  # setup, untimed: 10**6 logs' worth of collections would double it
    try:
        for i in range(p["n"]):
            acquire(f"key-{i}")  # made here and dropped with its log: no list of names outlives the leak
    finally:
        gc.enable()
    held = bucket.keys()
    clock.ms += 1001  # every item's window is [s, s + 1000]: at s + 1001 none counts
    bucket.leak(clock.now())
    gc.collect()
    peak, after = peak_resident_bytes() - before, resident_bytes() - before
    kept = f"{held:,} names held, {bucket.keys()} after the leak; {after / MIB:.0f} MiB before malloc_trim(0)"
    trimmed = released_to_os()
    # What the process still holds: glibc keeps freed heap resident until trimmed, for its own reuse.
    held_after = after if trimmed is None else trimmed - before
    return [{"value": peak / MIB, "unit": "MiB"}, {"value": held_after / MIB, "unit": "MiB", "extra": kept}]


class StillClock:
    """A clock that stands still until moved: a million acquires all land in one millisecond."""

    def __init__(self) -> None:
        self.ms = 1_700_000_000_000

    def now(self) -> int:
        return self.ms


def peak_resident_bytes() -> int:
    """This process's highest resident set size so far (Linux ``VmHWM``)."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


def released_to_os() -> int | None:
    """The resident size once glibc hands its free heap back (``malloc_trim``), or ``None`` off glibc:
    what the leak freed but the allocator kept, told apart from what is still held. Run last."""
    try:
        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
    trim(0)
    return resident_bytes()
