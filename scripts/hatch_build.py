"""Hatchling build hook: regenerate ``_sync/`` so a wheel never ships stale sync code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class GenerateSyncVariant(BuildHookInterface):  # type: ignore[type-arg]
    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        script = Path(self.root) / "scripts" / "run_unasync.py"
        subprocess.run([sys.executable, str(script)], check=True)
