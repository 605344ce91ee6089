"""v3.9's ``pyrate_limiter.utils``: re-exports only."""

from __future__ import annotations

from ._rate import Rate, RateItem, validate_rate_list
from ._v3 import binary_search, dedicated_sqlite_clock_connection, id_generator

__all__ = [
    "Rate",
    "RateItem",
    "binary_search",
    "dedicated_sqlite_clock_connection",
    "id_generator",
    "validate_rate_list",
]
