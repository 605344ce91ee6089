"""The driver: parses the command line, starts the servers and the workers of each side, runs every
chosen scenario's rounds and prints the table; ``scripts/bench.py`` calls ``main``."""

from __future__ import annotations

import argparse
import contextlib
import re
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .report import print_table, progress
from .specs import Spec, specs
from .upstream import upstream_venv
from .worker import Worker, serve

if TYPE_CHECKING:
    from .measure import Row

ROOT = Path(__file__).resolve().parents[2]
DESCRIPTION = """Benchmark pyrate_limiter against the floors of this machine and, if asked, against upstream 3.9.0.

    .venv/bin/python scripts/bench.py [--quick] [--only PATTERN] [--compare-upstream]
    .venv/bin/python scripts/bench.py --curves [--quick] [--only CURVE] [--out DIR]

Each scenario runs in a worker process (``scripts/bench.py --worker``), which measures right after every
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

``--curves`` measures instead how cost grows (``scripts/benchmark/curves.py``): time per acquire and
memory as live entries (10 to 10**6), distinct keys (1 to 10**6) and weight (1 to 10**6) grow, and
throughput as asyncio tasks (1 to 10 000) and threads (1 to 64) do, in memory, on Redis and on SQLite
where it applies; a CSV and a PNG per curve in ``--out``. ``--quick`` caps the largest points.
"""


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
    parser = argparse.ArgumentParser(description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="shorter runs, fewer rounds")
    parser.add_argument("--only", metavar="PATTERN", help="run the scenarios whose label matches this regex")
    parser.add_argument(
        "--compare-upstream", action="store_true", help="also run pyrate-limiter 3.9.0, in a temporary virtualenv"
    )
    parser.add_argument("--curves", action="store_true", help="measure how cost grows instead (CSV and PNG per curve)")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "docs" / "benchmark" / "curves", help="where --curves writes"
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return serve()
    seconds, rounds = (0.15, 5) if args.quick else (0.4, 7)
    chosen = [s for s in specs(args.quick) if not args.only or any(re.search(args.only, x, re.I) for x in s.labels)]
    sys.path.insert(0, str(ROOT))
    from tests import servers

    if args.curves:
        from .curves import run_curves

        return run_curves(args.quick, args.only, args.out, servers.redis_server)
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
