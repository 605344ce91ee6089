"""What ``Limiter.state`` answers: where a name stands against each of its rates, spending nothing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._rate import Rate

Usage = list[tuple["Rate", int, int]]
"""What a bucket's ``state`` reports per rate: the rate, the units counted now, ms until one frees."""


@dataclass(frozen=True)
class RateState:
    """One rate of a name's bucket, at the instant asked.

    :ivar used: units counted in the window now (reservations ahead included).
    :ivar remaining: units left before this rate refuses (0 when full).
    :ivar reset_ms: ms until the oldest unit counted frees its room (0 when none counts).
    """

    rate: Rate
    used: int
    remaining: int
    reset_ms: int


@dataclass(frozen=True)
class LimitState:
    """Where a name stands: when an item of the weight asked about would fit, and every rate's numbers.

    :ivar retry_after_ms: 0 if it fits now, the ms to wait otherwise, ``None`` if it never can.
    """

    retry_after_ms: int | None
    rates: tuple[RateState, ...]


def limit_state(wait: int, usage: Usage) -> LimitState:
    """The ``LimitState`` of a bucket's raw answer (``wait``: ``NEVER`` is -1)."""
    rates = tuple(RateState(rate, used, max(rate.limit - used, 0), reset) for rate, used, reset in usage)
    return LimitState(None if wait < 0 else wait, rates)
