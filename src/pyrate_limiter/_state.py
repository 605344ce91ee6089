"""What ``Limiter.state`` answers: where a name stands against each of its rates, spending nothing."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from ._rate import Rate

Usage = list[tuple["Rate", int, int]]
"""What a bucket's ``state`` reports per rate: the rate, the units counted now, ms until one frees."""


class RateState(NamedTuple):
    """One rate of a name's bucket, at the instant asked (immutable: a named tuple, cheap to make).

    :ivar used: units counted in the window now (reservations ahead included).
    :ivar remaining: units left before this rate refuses (0 when full).
    :ivar reset_ms: ms until the oldest unit counted frees its room (0 when none counts).
    """

    rate: Rate
    used: int
    remaining: int
    reset_ms: int


class LimitState(NamedTuple):
    """Where a name stands: when an item of the weight asked about would fit, and every rate's numbers.

    :ivar retry_after_ms: 0 if it fits now, the ms to wait otherwise, ``None`` if it never can.
    """

    retry_after_ms: int | None
    rates: tuple[RateState, ...]


def limit_state(wait: int, usage: Usage) -> LimitState:
    """The ``LimitState`` of a bucket's raw answer (``wait``: ``NEVER`` is -1).

    The last one made is handed out again for the very same answer (a bucket repeats its answer
    object when asked again in the same ms): it is immutable, and making one costs more than
    the bucket's reading.
    """
    global _last
    last = _last  # one read: another thread may replace it meanwhile
    if last[0] is usage and last[1] == wait:
        return last[2]
    rates = tuple(RateState(rate, used, max(rate.limit - used, 0), reset) for rate, used, reset in usage)
    state = LimitState(None if wait < 0 else wait, rates)
    _last = (usage, wait, state)
    return state


_last: tuple[object, int, LimitState] = (None, 0, LimitState(0, ()))
