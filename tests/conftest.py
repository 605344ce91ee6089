"""Shared test wiring: every async test runs on asyncio and on trio; servers start on demand."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

pytest_plugins = ["tests.server_fixtures"]


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: Any) -> None:
    # Generated sync tests cannot name anyio, so the marker is added here instead of in the source.
    if name.startswith("test") and inspect.iscoroutinefunction(obj):
        pytest.mark.anyio(obj)


@pytest.fixture
def native_async_driver(request: pytest.FixtureRequest) -> bool:
    """Whether asyncio-only drivers (redis.asyncio, aiosqlite, psycopg async) can run in this test.

    Only async tests on asyncio; under trio, and in generated sync tests, buckets get sync drivers.
    """
    return "anyio_backend" in request.fixturenames and request.getfixturevalue("anyio_backend") == "asyncio"
