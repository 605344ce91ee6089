"""The ``create_bucket`` fixture: the conformance suite runs once per bucket kind; and ``pool``, one
on the test PostgreSQL server for the tests of that backend."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Protocol

import pytest

from .bucket_kinds import ATOMIC, MAKERS, close_postgres_pool, open_postgres_pool

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from typing import Any

    from psycopg_pool import AsyncConnectionPool, ConnectionPool

    from pyrate_limiter import AsyncAbstractBucket, Rate


class AsyncCreateBucket(Protocol):
    """Makes a fresh bucket of the kind under test for ``rates``."""

    async def __call__(self, rates: list[Rate]) -> AsyncAbstractBucket: ...


_keys = itertools.count()


@pytest.fixture(params=sorted(MAKERS))
def bucket_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=sorted(ATOMIC))
def atomic_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def create_bucket(bucket_kind: str, request: pytest.FixtureRequest) -> AsyncIterator[AsyncCreateBucket]:
    """Make buckets of every kind, ours and a v3-style custom one."""
    async for create in _creating(bucket_kind, request):
        yield create


@pytest.fixture
async def create_atomic_bucket(atomic_kind: str, request: pytest.FixtureRequest) -> AsyncIterator[AsyncCreateBucket]:
    """Make buckets of the kinds that reserve atomically: all of ours."""
    async for create in _creating(atomic_kind, request):
        yield create


async def _creating(bucket_kind: str, request: pytest.FixtureRequest) -> AsyncIterator[AsyncCreateBucket]:
    """Yield a bucket maker of ``bucket_kind``; flush and close what it made afterwards."""
    made: list[AsyncAbstractBucket] = []

    async def create(rates: list[Rate]) -> AsyncAbstractBucket:
        bucket = await MAKERS[bucket_kind](rates, f"test-bucket-{next(_keys)}", request)
        made.append(bucket)
        return bucket

    yield create
    for bucket in made:
        await bucket.flush()
        await bucket.aclose()


@pytest.fixture
async def pool(request: pytest.FixtureRequest) -> AsyncIterator[AsyncConnectionPool[Any] | ConnectionPool[Any]]:
    """A pool on the test PostgreSQL server (``open_postgres_pool``), closed after the test."""
    opened = await open_postgres_pool(request)
    yield opened
    await close_postgres_pool(opened)
