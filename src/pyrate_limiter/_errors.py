"""The exceptions a limiter raises; their messages are built only when someone reads them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._window import NEVER

if TYPE_CHECKING:
    from ._rate import Rate, RateItem, Verdict


class _Refusal(Exception):
    """What both refusals carry first in ``args``: the item, and the rate that refused it."""

    args: tuple[Any, ...]
    _REMAINING: int  # where in ``args`` the units left per rate are: set by each kind

    @property
    def item(self) -> RateItem:
        return self.args[0]  # type: ignore[no-any-return]

    @property
    def rate(self) -> Rate:
        return self.args[1]  # type: ignore[no-any-return]

    @property
    def remaining(self) -> tuple[int, ...] | None:
        """Units each rate of the bucket had left at the decision, in the bucket's order, from the
        same atomic step; ``None`` from a bucket that cannot tell (one written against v3)."""
        args = self.args
        return args[self._REMAINING] if len(args) > self._REMAINING else None


class BucketFullException(_Refusal):
    """An item did not fit and the limiter was not allowed to wait for it.

    ``BucketFullException(item, rate[, wait[, remaining]])``: kept in ``args`` only, with no
    ``__init__`` of ours and the message built when read, so that raising costs little more than
    returning ``False``. ``meta_info`` has the keys the v3 docs show, and the decision's numbers.
    """

    args: tuple[Any, ...]
    _REMAINING = 3

    @property
    def retry_after_ms(self) -> int | None:
        """How long the item would have had to wait, from the same decision; ``None``: it never fits."""
        wait = self.args[2] if len(self.args) > 2 else -1
        return None if wait < 0 else int(wait)

    @property
    def meta_info(self) -> dict[str, Any]:
        """``error``, ``name``, ``weight`` and ``rate`` of the refused item (v3's keys), then
        ``retry_after_ms`` and ``remaining`` (see those properties)."""
        rate = str(self.rate)
        return {
            "error": f"Bucket for item={self.item.name} with Rate {rate} is already full",
            "name": self.item.name,
            "weight": self.item.weight,
            "rate": rate,
            "retry_after_ms": self.retry_after_ms,
            "remaining": self.remaining,
        }

    def __str__(self) -> str:
        return str(self.meta_info["error"])


class LimiterDelayException(_Refusal):
    """An item would fit only after a longer wait than ``max_delay`` allows.

    ``LimiterDelayException(item, rate, actual_delay, max_delay[, remaining])``, kept in ``args``
    like ``BucketFullException``.
    """

    args: tuple[Any, ...]
    _REMAINING = 4

    @property
    def actual_delay(self) -> int:
        return self.args[2]  # type: ignore[no-any-return]

    @property
    def retry_after_ms(self) -> int:
        """``actual_delay``, by the name ``BucketFullException`` has too."""
        return self.args[2]  # type: ignore[no-any-return]

    @property
    def max_delay(self) -> int:
        return self.args[3]  # type: ignore[no-any-return]

    @property
    def meta_info(self) -> dict[str, Any]:
        """``name``, ``weight``, ``rate``, ``max_delay`` and ``actual_delay`` (ms) of the refused item
        (v3's keys), then ``retry_after_ms`` and ``remaining``."""
        return {
            "name": self.item.name,
            "weight": self.item.weight,
            "rate": str(self.rate),
            "max_delay": self.max_delay,
            "actual_delay": self.actual_delay,
            "retry_after_ms": self.retry_after_ms,
            "remaining": self.remaining,
        }

    def __str__(self) -> str:
        return (
            f"Actual delay exceeded allowance: actual={self.actual_delay}, allowed={self.max_delay}\n"
            f"Bucket for item={self.item.name} with Rate {self.rate} is already full"
        )


def refusal(item: RateItem, verdict: Verdict, max_delay: int | None) -> Exception:
    """The exception for a refused item: full (no wait allowed, or never fits), or too long a wait,
    with the units each rate had left when the bucket can tell."""
    delay, rate = verdict[0], verdict[1]
    remaining = verdict[2] if len(verdict) > 2 else None  # a v3-style bucket tells only two
    if max_delay is None or delay == NEVER:
        return BucketFullException(item, rate, delay, remaining)
    return LimiterDelayException(item, rate, delay, max_delay, remaining)


class BackendError(Exception):
    """A bucket's storage failed (connection lost, disk full, ...).

    Distinct from a full bucket on purpose: an outage must never read as "rate limited".

    :ivar recorded: ``False`` when certainly nothing was recorded (the server refused, or was
        never reached); ``None`` when that is unknown: the call reached the server and its reply
        was lost after the client's retries, so the item may count. Treat it as admitted for the
        limit's sake (do not retry at once), and as failed for the request's.
    """

    def __init__(self, message: str, *, recorded: bool | None = None) -> None:
        super().__init__(message)
        self.recorded = recorded


def reason(error: BaseException) -> str:
    """What a ``BackendError`` message ends with: the kind of failure and the driver's own words."""
    return f"{type(error).__name__}: {str(error).strip() or 'no message'}"
