"""What the driver prints: progress on stderr, then the table of every row, its medians, ratios,
"x floor" and verdict."""

from __future__ import annotations

import statistics
import sys
from typing import TYPE_CHECKING, TextIO

from .floors import FLOORS

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from .measure import Row
    from .specs import Round, Spec, Target

LEFT = ("scenario", "target", "extra")  # the table's left-aligned columns


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
