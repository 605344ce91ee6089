"""Rates, durations and rate items: the values every variant and backend shares."""

from __future__ import annotations

from enum import IntEnum
from itertools import pairwise
from typing import Any, TypeAlias


class Duration(IntEnum):
    """Interval lengths in milliseconds; arithmetic gives plain ints (``Duration.SECOND * 2 == 2000``)."""

    SECOND = 1000
    MINUTE = 60 * SECOND
    HOUR = 60 * MINUTE
    DAY = 24 * HOUR
    WEEK = 7 * DAY

    @staticmethod
    def readable(value: int) -> str:
        """Write ``value`` ms in the largest unit it fills: ``2000 -> '2.0s'``, ``90000 -> '1.5m'``."""
        for unit, suffix in _READABLE_UNITS:
            if value >= unit:
                return f"{value / unit}{suffix}"
        return f"{value}ms"


_READABLE_UNITS = (
    (Duration.WEEK, "w"),
    (Duration.DAY, "d"),
    (Duration.HOUR, "h"),
    (Duration.MINUTE, "m"),
    (Duration.SECOND, "s"),
)


class Rate:
    """At most ``limit`` units of weight in any window of ``interval`` milliseconds."""

    __slots__ = ("interval", "limit")

    def __init__(self, limit: int, interval: int | Duration) -> None:
        if type(limit) is not int or limit <= 0:
            raise ValueError(f"Rate limit must be a positive int, got {limit!r}")
        if not isinstance(interval, int) or isinstance(interval, bool) or interval <= 0:
            raise ValueError(f"Rate interval must be a positive number of ms, got {interval!r}")
        self.limit = limit
        self.interval = int(interval)

    def __str__(self) -> str:
        return f"limit={self.limit}/{Duration.readable(self.interval)}"

    def __repr__(self) -> str:
        return f"limit={self.limit}/{self.interval}"  # v3's repr: the interval in ms

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Rate):
            return NotImplemented
        return (self.limit, self.interval) == (other.limit, other.interval)

    def __hash__(self) -> int:
        return hash((self.limit, self.interval))

    def __reduce__(self) -> tuple[Any, ...]:
        return (Rate, (self.limit, self.interval))


class RateItem:
    """One request: its name, the time it happened (ms, from a clock) and its weight."""

    __slots__ = ("name", "timestamp", "weight")

    def __init__(self, name: Any, timestamp: int, weight: int = 1) -> None:
        self.name = name
        self.timestamp = timestamp
        self.weight = weight

    def __repr__(self) -> str:
        return f"RateItem(name={self.name!r}, timestamp={self.timestamp}, weight={self.weight})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RateItem):
            return NotImplemented
        return (self.name, self.timestamp, self.weight) == (other.name, other.timestamp, other.weight)

    __hash__ = None  # type: ignore[assignment]  # mutable, like v3's

    def __reduce__(self) -> tuple[Any, ...]:
        return (RateItem, (self.name, self.timestamp, self.weight))


# Names already found good: checking one again is a set lookup. Cleared when full, never stale.
VALID_NAMES: set[str] = set()
_VALID_NAMES_MAX = 1 << 14


Verdict: TypeAlias = "tuple[int, Rate | None] | tuple[int, None, int] | tuple[int, Rate, tuple[int, ...]]"
"""What a bucket's ``reserve`` decides, the item left as it came:

* ``(delay, None)``: recorded ``delay`` ms after the item's stamp, the time to sleep;
* ``(delay, None, at)``: recorded at ``at``, ``delay`` ms after the time it was decided at, which
  is not the item's stamp: the floor, for an item that came too late for it (see ``_window``),
  or the server's clock;
* ``(wait, rate)`` when refused, ours adding ``remaining``: the units each rate had left at the
  decision, in the bucket's order (a v3-style bucket cannot tell).
"""


def recorded_at(item: RateItem, verdict: Verdict) -> int:
    """The stamp an admitting ``verdict`` recorded ``item`` at: what ``release`` gives back."""
    if len(verdict) == 3:
        at = verdict[2]
        assert type(at) is int  # admitted: a stamp, not remaining
        return at
    return item.timestamp + verdict[0]


def check_pause(name: Any, until: Any) -> None:
    """Refuse a pause every backend could not keep: ``name`` as ``check_name`` takes it, and an
    end that is a timestamp in ms (an ``int`` from 0 to 2**62, the range of every backend's numbers).

    :raises TypeError: a name of another type, or an end that is not an ``int``.
    :raises ValueError: a name ``check_name`` refuses, or an end out of that range.
    """
    check_name(name)
    if type(until) is not int:
        raise TypeError(f"a pause ends at a timestamp in ms (an int), got {until!r}")
    if not 0 <= until <= 2**62:
        raise ValueError(f"a pause ends at a timestamp from 0 to 2**62 ms, got {until}")


def check_weight(weight: Any) -> None:
    """Refuse a weight that is not a whole number of units: an ``int`` (not a ``bool``) ``>= 0``.

    :raises TypeError: not an ``int``.
    :raises ValueError: negative.
    """
    if type(weight) is not int:
        raise TypeError(f"weight must be an int, got {weight!r}")
    if weight < 0:
        raise ValueError(f"weight must be >= 0, got {weight}")


def check_name(name: Any) -> None:
    """Refuse a name some backend could not keep: every one of them takes exactly these.

    A name is a ``str`` that encodes to UTF-8 (no lone surrogate) and holds no NUL character,
    which SQL text cannot, or an ``int``, as the v3 docs' first example uses (kept as it is in
    memory, as its decimal text elsewhere). Anything else is refused the same way on every
    backend, before anything is recorded.

    :raises TypeError: neither a ``str`` nor an ``int``.
    :raises ValueError: a NUL character or a lone surrogate.
    """
    if type(name) is int:
        return
    if not isinstance(name, str):
        raise TypeError(f"a name must be a str (or an int), got {name!r}")
    if "\0" in name:
        raise ValueError(f"a name cannot hold a NUL character, got {name!r}")
    if not name.isascii():
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"a name must encode to UTF-8 (no lone surrogate), got {name!r}") from None
    if len(VALID_NAMES) >= _VALID_NAMES_MAX:
        VALID_NAMES.clear()
    VALID_NAMES.add(name)


def validate_rate_list(rates: list[Rate]) -> bool:
    """Whether ``rates`` is non-empty and ordered as buckets need.

    Intervals and limits grow strictly from one rate to the next, and no later rate allows
    a faster pace (limit per interval) than an earlier one.
    """
    if not rates:
        return False
    for prev, cur in pairwise(rates):
        if cur.interval <= prev.interval or cur.limit <= prev.limit:
            return False
        if cur.limit * prev.interval > prev.limit * cur.interval:
            return False
    return True


def check_rates(rates: list[Rate]) -> list[Rate]:
    """Return ``rates`` as a new list, or raise ``ValueError`` naming what is wrong with it."""
    rates = list(rates)
    if not all(isinstance(rate, Rate) for rate in rates):
        raise TypeError(f"rates must be Rate objects, got {rates!r}")
    if not validate_rate_list(rates):
        raise ValueError(
            f"rates must be a non-empty list ordered by interval and limit, with non-increasing "
            f"limit/interval, got {rates!r}"
        )
    return rates
