"""``scripts/bench.py --curves``: how an acquire's time, the memory kept and the throughput grow with live
entries, distinct keys, concurrent callers and weight, on each backend; a CSV and a PNG per curve.

Each point runs in a fresh worker (its memory and threads are its own); the points are in
``curve_points``. Redis is started on loopback by ``tests/servers.py``, as for the main run.
"""

from __future__ import annotations

import contextlib
import csv
import os
import re
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .report import progress
from .worker import Worker

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from matplotlib.axes import Axes

    from .measure import Row

ALL = ("memory", "redis", "sqlite")
COLORS = {"memory": "tab:blue", "redis": "tab:red", "sqlite": "tab:green", "floor": "tab:gray"}
CONTEXT = {"floor"}  # plotted for comparison, judged by no target
COLUMNS = ["backend", "x", "us_per_acquire", "acquires_per_s", "reference_us", "x_reference"]
COLUMNS += ["memory_bytes", "memory_per_unit", "memory_how", "point_seconds", "extra", "error"]


def decades(first: int, last: int) -> list[int]:
    return [10**i for i in range(first, last + 1)]


@dataclass(frozen=True)
class Curve:
    """One curve: what grows along it, at which points, on which backends, and its target.

    ``target``: ``("growth", x)``, µs per acquire at the last point at most x times its reference's
    (the first point's setup, timed in the same worker, interleaved); ``("kept", x)``, acquires/s at
    the most callers at least x times the best of any point.
    """

    name: str
    title: str
    axis: str
    unit: str  # what memory is counted per; "" for the throughput curves, which measure none
    full: list[int]
    quick: list[int]
    backends: tuple[str, ...]
    target: tuple[str, float]
    memory_grows: bool = True  # memory should be linear in x (else flat): the plot's dotted lines

    @property
    def throughput(self) -> bool:
        return self.target[0] == "kept"


CURVES = [
    Curve(
        "entries",
        "Live entries in one key's log, Rate(10**7, 1 h)",
        "live entries in the log",
        "entry",
        decades(1, 6),
        decades(1, 5),
        ALL,
        ("growth", 2),
    ),
    Curve(
        "keys",
        "Distinct keys routed by a BucketFactory, one item each; floor: a dict of Locks",
        "keys",
        "key",
        decades(0, 6),
        decades(0, 4),
        ("memory", "redis", "floor"),
        ("growth", 2),
    ),
    Curve(
        "tasks",
        "asyncio tasks acquiring on one key, each yielding after each acquire; floor: yielding only",
        "asyncio tasks",
        "",
        decades(0, 4),
        decades(0, 3),
        ("memory", "redis", "floor"),
        ("kept", 0.5),
    ),
    Curve(
        "threads",
        "Threads acquiring on one key; floor: a Lock acquire, time.time() and release",
        "threads",
        "",
        [1, 2, 4, 8, 16, 32, 64],
        [1, 4, 16],
        (*ALL, "floor"),
        ("kept", 0.5),
    ),
    Curve(
        "weight",
        "Weight of each acquire, 10 000 entries of that weight in the log",
        "weight",
        "entry",
        decades(0, 6),
        decades(0, 6),
        ALL,
        ("growth", 1.25),
        memory_grows=False,
    ),
]


def settings(quick: bool) -> Row:
    """What every point of a run is given: how many acquires to time (in memory, where they are
    cheap, more), for how long callers run and how many times each number of them."""
    calls = 1_000 if quick else 2_000
    return {"calls": calls, "memory_calls": 25 * calls, "seconds": 0.2 if quick else 0.4, "rounds": 3 if quick else 5}


def run_curves(quick: bool, only: str | None, out: Path, redis_server: Callable[[], Any]) -> None:
    """Measure every chosen curve, write ``<curve>.csv`` and ``<curve>.png`` to ``out``, print a summary."""
    chosen = [curve for curve in CURVES if not only or re.search(only, curve.name, re.I)]
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, list[Row]] = {}
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        context: Row = {}
        down: dict[str, str] = {}
        if any("redis" in curve.backends for curve in chosen):
            progress("starting redis")
            try:
                context["redis_url"] = stack.enter_context(redis_server()).url
            except Exception as error:
                down["redis"] = f"redis: {error}".splitlines()[0][:80]
        for number, curve in enumerate(chosen, 1):
            rows = []
            points = curve.quick if quick else curve.full
            for backend in curve.backends:
                title, params = f"[{number}/{len(chosen)}] {curve.name}: {backend}", {**context, **settings(quick)}
                params["backend"] = backend
                if curve.throughput:  # the numbers of callers take turns in one worker: see pt_tasks
                    progress(f"{title}, {points[0]:,} to {points[-1]:,}")
                    rows += run_points(curve.name, {**params, "xs": points}, points, down.get(backend))
                    continue
                for x in points:
                    progress(f"{title}, {x:,}")
                    rows += run_points(curve.name, {**params, "x": x}, [x], down.get(backend))
            write_csv(out / f"{curve.name}.csv", rows)
            plot(curve, rows, out / f"{curve.name}.png", quick)
            results[curve.name] = rows
        progress("")
    print_summary(chosen, results)
    print(f"\n{time.monotonic() - started:.0f} s; CSV and PNG per curve in {out}")


def run_points(curve: str, params: Row, xs: list[int], down: str | None) -> list[Row]:
    """The rows of ``xs`` from a worker of their own, or why they could not run."""
    rows: list[Row] = [{"backend": params["backend"], "x": x} for x in xs]
    if down is not None:
        return [{**row, "error": down} for row in rows]
    worker, start = Worker(sys.executable), time.monotonic()
    try:
        answer = worker.run(f"curve {curve}", params)
    finally:
        worker.close()
    seconds = (time.monotonic() - start) / len(xs)
    if isinstance(answer, str):
        return [{**row, "seconds": seconds, "error": answer} for row in rows]
    return [{**row, "seconds": seconds, **got} for row, got in zip(rows, answer, strict=True)]


def write_csv(path: Path, rows: list[Row]) -> None:
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(COLUMNS)
        for r in rows:
            numbers = [r.get(key) for key in ("us", "ops", "ref_us", "ratio", "memory", "per", "how", "seconds")]
            cells = ["" if v is None else f"{v:.6g}" if isinstance(v, float) else v for v in numbers]
            writer.writerow([r["backend"], r["x"], *cells, r.get("extra", ""), r.get("error", "")])


def plot(curve: Curve, rows: list[Row], path: Path, quick: bool) -> None:
    """Time per acquire (or throughput) and, where measured, memory, against the curve's axis, log-log."""
    from matplotlib.figure import Figure

    panels = 2 if curve.unit else 1
    figure = Figure(figsize=(6.2 * panels if curve.unit else 7.6, 4.4), layout="constrained")
    axes = figure.subplots(1, panels, squeeze=False)[0]
    points = curve.quick if quick else curve.full
    for backend in curve.backends:
        measured = [r for r in rows if r["backend"] == backend and "ops" in r]
        xs = [r["x"] for r in measured]
        label = backend
        if measured and not curve.throughput:
            label += f": {measured[-1]['ratio']:.2f}x the time at {points[0]:,} (interleaved) at {xs[-1]:,}"
        ys = [r["ops" if curve.throughput else "us"] for r in measured]
        axes[0].plot(xs, ys, "o-", color=COLORS[backend], label=label)
        if curve.unit:
            kept = [r for r in measured if r["memory"] > 0]
            if kept:
                label = f"{backend} ({kept[-1]['how']}): {kept[-1]['per']:,.0f} B/{curve.unit} at {kept[-1]['x']:,}"
                axes[1].plot(
                    [r["x"] for r in kept], [r["memory"] for r in kept], "o-", color=COLORS[backend], label=label
                )
                last = kept[-1]  # linear in x (or flat), through the largest point
                line = [last["memory"] * (x / last["x"] if curve.memory_grows else 1) for x in points]
                axes[1].plot(points, line, ":", color=COLORS[backend])
    axes[0].set_ylabel(
        "acquires per second (wall time)" if curve.throughput else "µs per acquire (median of chunks of 10)"
    )
    if curve.unit:
        axes[1].set_ylabel(f"memory taken (bytes); dotted: {'linear' if curve.memory_grows else 'flat'}")
    for ax in axes:
        log_axes(ax, points, curve.axis)
    scope = "quick run" if quick else "full run"
    figure.suptitle(f"{curve.title}\n{scope}, {os.cpu_count()} cores, shared machine: noisy", fontsize=10)
    figure.savefig(path, dpi=100)


def log_axes(ax: Axes, points: list[int], label: str) -> None:
    from matplotlib.ticker import NullLocator

    ax.set_xscale("log", base=2 if points[-1] <= 64 else 10)
    ax.set_yscale("log")
    ax.set_xticks(points, [f"{x:,}" if x < 10**4 else f"1e{len(str(x)) - 1}" for x in points])
    ax.xaxis.set_minor_locator(NullLocator())  # y keeps its minor ticks: labelled where a range is narrow
    ax.set_xlabel(label)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8)


def print_summary(chosen: list[Curve], results: dict[str, list[Row]]) -> None:
    """Each curve's values per backend, and its target's verdict."""
    for curve in chosen:
        kind, bound = curve.target
        print(f"\n{curve.name}: {curve.title}")
        unit = "acquires/s" if curve.throughput else "µs/acquire"
        for backend in curve.backends:
            rows = [r for r in results[curve.name] if r["backend"] == backend]
            measured = [r for r in rows if "ops" in r]
            errors = {r["error"] for r in rows if "error" in r}
            values = "  ".join(f"{r['x']:,}: {cell(r, curve)}" for r in rows)
            print(f"  {backend:<7} {values}  ({unit})")
            if len(measured) != len(rows) or not measured:
                print(f"  {'':<7} n/a: {'; '.join(sorted(errors))[:200]}")
                continue
            if backend in CONTEXT:
                if kind == "growth":
                    print(
                        f"  {'':<7} at {measured[-1]['x']:,}: {measured[-1]['ratio']:.2f}x the time at 1, interleaved"
                    )
                continue
            if kind == "growth":
                value, first = measured[-1]["ratio"], measured[0]["x"]
                verdict = (
                    f"at {measured[-1]['x']:,}: {value:.2f}x the time at {first:,}, interleaved; target <= {bound:g}x"
                )
                passed = value <= bound
            else:
                value = measured[-1]["ops"] / max(r["ops"] for r in measured)
                verdict = f"at {measured[-1]['x']:,} callers {value:.0%} of the best point, target >= {bound:.0%}"
                passed = value >= bound
            if curve.unit:
                verdict += "; memory " + ", ".join(
                    f"{r['per']:,.0f} B/{curve.unit} at {r['x']:,}" for r in measured[-2:]
                )
            print(f"  {'':<7} {verdict}: {'PASS' if passed else 'MISS'}")


def cell(row: Row, curve: Curve) -> str:
    if "error" in row:
        return "n/a"
    return f"{row['ops']:,.0f}" if curve.throughput else f"{row['us']:.3g}"
