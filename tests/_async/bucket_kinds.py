"""Every bucket the conformance suite runs against; a backend adds one function and one entry.

Each maker builds a bucket for ``rates`` (named uniquely by ``key``) and returns it; the
``request`` gives access to server fixtures.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from pyrate_limiter import AsyncAbstractBucket, AsyncInMemoryBucket, RateItem, validate_rate_list

if TYPE_CHECKING:
    import pytest

    from pyrate_limiter import Rate


class AsyncListBucket(AsyncAbstractBucket):
    """A user's bucket written against the v3 docs: a plain list, only the abstract methods."""

    def __init__(self, rates: list[Rate]) -> None:
        if not validate_rate_list(rates):
            raise ValueError(f"bad rates {rates!r}")
        self.rates = rates
        self.items: list[RateItem] = []

    async def put(self, item: RateItem) -> bool:
        for rate in self.rates:
            used = sum(1 for old in self.items if old.timestamp > item.timestamp - rate.interval)
            if used + item.weight > rate.limit:
                self.failing_rate = rate
                return False
        self.failing_rate = None
        self.items += [RateItem(item.name, item.timestamp) for _ in range(item.weight)]
        self.items.sort(key=lambda unit: unit.timestamp)
        return True

    async def leak(self, current_timestamp: int | None = None) -> int:
        if current_timestamp is None:
            return 0
        horizon = current_timestamp - self.rates[-1].interval
        kept = [item for item in self.items if item.timestamp > horizon]
        removed, self.items = len(self.items) - len(kept), kept
        return removed

    async def flush(self) -> None:
        self.items.clear()
        self.failing_rate = None

    async def count(self) -> int:
        return len(self.items)

    async def peek(self, index: int) -> RateItem | None:
        return self.items[-1 - index] if 0 <= index < len(self.items) else None


async def in_memory(rates: list[Rate], key: str, request: pytest.FixtureRequest) -> AsyncAbstractBucket:
    return AsyncInMemoryBucket(rates)


async def custom_list(rates: list[Rate], key: str, request: pytest.FixtureRequest) -> AsyncAbstractBucket:
    return AsyncListBucket(rates)


class AsyncMaker(Protocol):
    async def __call__(self, rates: list[Rate], key: str, request: pytest.FixtureRequest) -> AsyncAbstractBucket: ...


MAKERS: dict[str, AsyncMaker] = {
    "in_memory": in_memory,
    "custom_list": custom_list,
}

# Makers whose buckets implement the atomic reservation (the custom list bucket does not).
ATOMIC: set[str] = {"in_memory"}

