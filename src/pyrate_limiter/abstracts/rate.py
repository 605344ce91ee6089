"""v3.9's ``pyrate_limiter.abstracts.rate``: re-exports only."""

from __future__ import annotations

from .._rate import Duration, Rate, RateItem

__all__ = ["Duration", "Rate", "RateItem"]
