"""The benchmark behind ``scripts/bench.py``: the driver (``cli``, ``specs``, ``report``, ``upstream``, and
``curves`` for ``--curves``) and the worker side it runs each scenario in (``worker``, ``scenarios``,
``accuracy``, ``decisions``, ``floors``, ``limiters``, ``measure``, ``curve_points``, ``curve_logs``)."""

from __future__ import annotations
