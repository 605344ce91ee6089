"""The README's first command must keep working."""

from __future__ import annotations

import re
import subprocess
import sys
from typing import TYPE_CHECKING

from tests.fresh_env import ROOT, copy_source_tree, outside_env

if TYPE_CHECKING:
    from pathlib import Path

TRIO_HINT = "AsyncLimiter on trio: skipped, trio is not installed (pip install 'pyrate-limiter[trio]')"


def readme_first_command() -> str:
    """The first line of the README's first ``bash`` block, as a reader would paste it."""
    found = re.search(r"^```bash\n(.*)$", (ROOT / "README.md").read_text(), re.MULTILINE)
    assert found, "README.md has no ```bash block"
    return found.group(1)


def test_demo_shows_admitted_delayed_and_refused_requests() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "pyrate_limiter", "demo"], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert "request 4 admitted after waiting" in out
    assert "request 4 refused: Bucket for item=api with Rate limit=3/1.0s is already full" in out
    assert out.count("task 8 admitted") == 2  # asyncio and trio (the dev install has the [trio] extra)


def test_readme_first_command_runs_in_a_fresh_clone_on_the_base_install(tmp_path: Path) -> None:
    command = readme_first_command()
    assert "pyrate_limiter demo" in command
    # The command makes .venv in its cwd, with the machine's python3 (no virtualenv active).
    done = subprocess.run(
        ["bash", "-c", command],
        cwd=copy_source_tree(tmp_path),
        env=outside_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout
    assert "Traceback" not in done.stdout, done.stdout
    assert "request 4 refused" in done.stdout
    assert done.stdout.count("task 8 admitted") == 1, done.stdout  # asyncio only: anyio is the one dependency
    assert TRIO_HINT in done.stdout, done.stdout
