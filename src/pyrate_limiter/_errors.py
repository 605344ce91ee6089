"""The exceptions a limiter raises; their messages are built only when someone reads them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._rate import Rate, RateItem


class BucketFullException(Exception):
    """An item did not fit and the limiter was not allowed to wait for it."""

    def __init__(self, item: RateItem, rate: Rate) -> None:
        # No super().__init__(): the message is built only when read, so raising stays cheap.
        self.item = item
        self.rate = rate

    @property
    def meta_info(self) -> dict[str, Any]:
        """``error``, ``name``, ``weight`` and ``rate`` of the refused item."""
        rate = str(self.rate)
        return {
            "error": f"Bucket for item={self.item.name} with Rate {rate} is already full",
            "name": self.item.name,
            "weight": self.item.weight,
            "rate": rate,
        }

    def __str__(self) -> str:
        return str(self.meta_info["error"])

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.item, self.rate))


class LimiterDelayException(Exception):
    """An item would fit only after a longer wait than ``max_delay`` allows."""

    def __init__(self, item: RateItem, rate: Rate, actual_delay: int, max_delay: int) -> None:
        self.item = item
        self.rate = rate
        self.actual_delay = actual_delay
        self.max_delay = max_delay

    @property
    def meta_info(self) -> dict[str, Any]:
        """``name``, ``weight``, ``rate``, ``max_delay`` and ``actual_delay`` (ms) of the refused item."""
        return {
            "name": self.item.name,
            "weight": self.item.weight,
            "rate": str(self.rate),
            "max_delay": self.max_delay,
            "actual_delay": self.actual_delay,
        }

    def __str__(self) -> str:
        return (
            f"Actual delay exceeded allowance: actual={self.actual_delay}, allowed={self.max_delay}\n"
            f"Bucket for item={self.item.name} with Rate {self.rate} is already full"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.item, self.rate, self.actual_delay, self.max_delay))


class BackendError(Exception):
    """A bucket's storage failed (connection lost, disk full, ...): nothing was recorded.

    Distinct from a full bucket on purpose: an outage must never read as "rate limited".
    """
