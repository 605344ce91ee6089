"""The benchmark behind ``scripts/bench.py``: the driver (``cli``, ``specs``, ``report``, ``upstream``) and
the worker side it runs each scenario in (``worker``, ``scenarios``, ``accuracy``, ``floors``, ``limiters``,
``measure``)."""

from __future__ import annotations
