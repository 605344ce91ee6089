"""v3.9's ``pyrate_limiter.abstracts.clock``: re-exports only."""

from __future__ import annotations

from .._sync.clocks import AbstractClock

__all__ = ["AbstractClock"]
