"""The exact window check every multi-caller test ends with."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from pyrate_limiter import Rate


def assert_windows_hold(admitted: Iterable[Sequence[int]], rates: Sequence[Rate]) -> None:
    """No window ``[x - interval, x]`` of any rate holds more than its limit of the admitted items.

    ``admitted`` holds ``(timestamp, weight, ...)`` entries in any order.
    """
    entries = sorted((int(entry[0]), int(entry[1])) for entry in admitted)
    for rate in rates:
        start, inside = 0, 0
        for at, weight in entries:
            inside += weight
            while entries[start][0] < at - rate.interval:
                inside -= entries[start][1]
                start += 1
            assert inside <= rate.limit, f"{inside} units in the {rate} window ending at {at}"
