"""A clock the test moves by hand, so decisions are checked without sleeping."""

from __future__ import annotations

T0 = 1_700_000_000_000


class FakeClock:
    """Stands still until ``advance`` moves it; a plain ``now()`` works for both variants."""

    def __init__(self, start: int = T0) -> None:
        self.time = start

    def now(self) -> int:
        return self.time

    def advance(self, ms: int) -> None:
        self.time += ms
