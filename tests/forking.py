"""What the fork tests share: the exit codes of forked children, none of which may hang."""

from __future__ import annotations

import os
import time


def exit_codes(children: list[int], patience: float) -> dict[int, int]:
    """Each child's exit code; a child still running after ``patience`` seconds is killed and fails the test."""
    codes: dict[int, int] = {}
    deadline = time.monotonic() + patience
    while len(codes) < len(children) and time.monotonic() < deadline:
        for pid in children:
            if pid not in codes:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    codes[pid] = os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    hung = [pid for pid in children if pid not in codes]
    for pid in hung:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    assert not hung, f"{len(hung)} of {len(children)} children hung on an inherited lock"
    return codes
