"""The worker process and the driver's handle on it: one JSON request per stdin line, one JSON answer
per stdout line. It imports whichever ``pyrate_limiter`` its interpreter has, and only once it runs."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .accuracy import sc_accuracy
from .curve_points import pt_entries, pt_keys, pt_tasks, pt_threads, pt_weight
from .decisions import sc_per_key_memory, sc_reserve, sc_state
from .floors import floor_memory, floor_postgres, floor_postgres_tasks, floor_redis, floor_redis_tasks, floor_sqlite
from .scenarios import (
    sc_acquire,
    sc_async,
    sc_keys,
    sc_memory,
    sc_redis_memory,
    sc_rejected,
    sc_v3_async,
    sc_waiter,
    sc_weight,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from .measure import Row
    from .specs import Round

SCRIPT = Path(__file__).resolve().parent.parent / "bench.py"
"""What a worker runs, with ``--worker``: by path, so that its ``sys.path`` starts at ``scripts/``."""


SCENARIOS: dict[str, Callable[[Any, Row], list[Row]]] = {
    "acquire": sc_acquire,
    "rejected": sc_rejected,
    "keys": sc_keys,
    "v3 async": sc_v3_async,
    "async": sc_async,
    "memory": sc_memory,
    "redis_memory": sc_redis_memory,
    "weight": sc_weight,
    "waiter": sc_waiter,
    "accuracy": sc_accuracy,
    "state": sc_state,
    "reserve": sc_reserve,
    "per_key_memory": sc_per_key_memory,
    "floor memory": floor_memory,
    "floor redis": floor_redis,
    "floor sqlite": floor_sqlite,
    "floor postgres": floor_postgres,
    "curve entries": pt_entries,
    "curve keys": pt_keys,
    "curve tasks": pt_tasks,
    "curve threads": pt_threads,
    "curve weight": pt_weight,
    "floor postgres tasks": floor_postgres_tasks,
    "floor redis tasks": floor_redis_tasks,
}


def serve() -> None:
    """Answer one JSON request per stdin line with one JSON line; scenario output goes to stderr."""
    out, sys.stdout = sys.stdout, sys.stderr
    import pyrate_limiter as pl

    for line in sys.stdin:
        request = json.loads(line)
        try:
            answer: Row = {"rows": SCENARIOS[request["scenario"]](pl, request["params"])}
        except Exception as error:  # a backend still being written must not end the run
            answer = {"error": f"{type(error).__name__}: {error}".splitlines()[0][:90]}
        out.write(json.dumps(answer) + "\n")
        out.flush()


class Worker:
    """A worker process of one side, restarted if it dies."""

    def __init__(self, python: str) -> None:
        self.python = python
        self.proc: subprocess.Popen[str] | None = None

    def run(self, scenario: str, params: Row) -> Round:
        if self.proc is None or self.proc.poll() is not None:
            argv = [self.python, str(SCRIPT), "--worker"]
            # Another interpreter (upstream's) must not see our PYTHONPATH; ours keeps it, so that a
            # worktree run with PYTHONPATH=src measures that tree, not the package installed.
            env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" or self.python == sys.executable}
            self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"scenario": scenario, "params": params}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            return f"worker exited with {self.proc.wait()}"
        answer = json.loads(line)
        return answer["rows"] if "rows" in answer else str(answer["error"])

    def close(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(OSError):
                self.proc.communicate(timeout=30)  # closes stdin: the worker ends its loop
