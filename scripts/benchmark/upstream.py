"""The temporary virtualenv holding upstream pyrate-limiter 3.9.0 for ``--compare-upstream``."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from .report import progress

if TYPE_CHECKING:
    from collections.abc import Iterator


UPSTREAM_PACKAGES = ["pyrate-limiter==3.9.0", "redis", "psycopg[pool,binary]"]


@contextlib.contextmanager
def upstream_venv() -> Iterator[str]:
    """The interpreter of a new virtualenv holding upstream 3.9.0, deleted when the block ends."""
    directory = tempfile.mkdtemp(prefix="bench-upstream-")
    try:
        progress("installing pyrate-limiter==3.9.0 in a temporary virtualenv")
        subprocess.run([sys.executable, "-m", "venv", directory], check=True, capture_output=True)
        python = str(Path(directory) / "bin" / "python")
        install = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check", *UPSTREAM_PACKAGES]
        pip = subprocess.run(install, capture_output=True, text=True)
        if pip.returncode != 0:
            raise RuntimeError(f"pip install failed: {pip.stderr.strip().splitlines()[-1:]}")
        yield python
    finally:
        shutil.rmtree(directory, ignore_errors=True)
