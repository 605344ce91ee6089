"""Benchmark pyrate_limiter: ``.venv/bin/python scripts/bench.py [--quick] [--only PATTERN] [--compare-upstream]``,
or how cost grows: ``.venv/bin/python scripts/bench.py --curves [--quick] [--only CURVE] [--out DIR]``.

The code is in ``scripts/benchmark/``; ``--help`` says what it measures. Workers run this file too.
"""

from __future__ import annotations

from benchmark.cli import main

if __name__ == "__main__":
    main()
