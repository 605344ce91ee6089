"""``python -m pyrate_limiter demo``: watch the in-memory limiter admit, delay and refuse."""

from __future__ import annotations

import argparse
import importlib.util
import time

import anyio

from . import AsyncLimiter, BucketFullException, Duration, Limiter, Rate


def sync_demo() -> None:
    rate = Rate(3, Duration.SECOND)
    print(f"Sync Limiter, {rate}, waiting up to 1500 ms for room:")
    started = time.monotonic()
    with Limiter(rate, max_delay=1500) as limiter:
        for n in range(1, 8):
            before = time.monotonic()
            limiter.try_acquire("api")
            waited = (time.monotonic() - before) * 1000
            note = f"after waiting {waited:.0f} ms" if waited > 5 else "at once"
            print(f"  +{time.monotonic() - started:5.2f}s  request {n} admitted {note}")

    print(f"\nSync Limiter, {rate}, no waiting: the 4th request raises")
    with Limiter(rate) as limiter:
        for n in range(1, 5):
            try:
                limiter.try_acquire("api")
                print(f"  request {n} admitted")
            except BucketFullException as error:
                print(f"  request {n} refused: {error}")
                print(f"  meta_info: {error.meta_info}")


def async_demo(backend: str) -> None:
    rate = Rate(5, Duration.SECOND)
    print(f"\nAsyncLimiter on {backend}, {rate}, 8 concurrent tasks (every 3rd weighs 2):")

    async def run() -> None:
        started = time.monotonic()
        async with AsyncLimiter(rate, max_delay=2000) as limiter:

            async def request(n: int) -> None:
                await limiter.try_acquire("api", weight=2 if n % 3 == 0 else 1)
                print(f"  +{time.monotonic() - started:5.2f}s  task {n} admitted")

            async with anyio.create_task_group() as tasks:
                for n in range(1, 9):
                    tasks.start_soon(request, n)

    anyio.run(run, backend=backend)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m pyrate_limiter", description=__doc__)
    parser.add_argument("command", choices=["demo"])
    parser.parse_args()
    sync_demo()
    async_demo("asyncio")
    # The base install brings anyio, so asyncio; trio comes with the [trio] extra.
    if importlib.util.find_spec("trio") is None:
        print("\nAsyncLimiter on trio: skipped, trio is not installed (pip install 'pyrate-limiter[trio]')")
    else:
        async_demo("trio")


if __name__ == "__main__":
    main()
