"""v3.9's ``pyrate_limiter.exceptions``, with our ``BackendError``: re-exports only."""

from __future__ import annotations

from ._errors import BackendError, BucketFullException, LimiterDelayException
from ._rate import Rate, RateItem

__all__ = ["BackendError", "BucketFullException", "LimiterDelayException", "Rate", "RateItem"]
