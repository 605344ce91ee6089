"""The README's first command must keep working."""

from __future__ import annotations

import subprocess
import sys


def test_demo_shows_admitted_delayed_and_refused_requests() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "pyrate_limiter", "demo"], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert "request 4 admitted after waiting" in out
    assert "request 4 refused: Bucket for item=api with Rate limit=3/1.0s is already full" in out
    assert out.count("task 8 admitted") == 2  # asyncio and trio
