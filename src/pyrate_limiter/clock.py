"""v3's module name for the clocks: the same names as ``pyrate_limiter.clocks``."""

from __future__ import annotations

from .clocks import *  # noqa: F403
from .clocks import __all__ as __all__
