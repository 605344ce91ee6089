"""Session fixtures for the real servers in tests/servers.py; pytest starts each one only when a test
asks for it, so a run that touches no backend starts nothing."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.servers import postgres_server, redis_cluster, redis_server

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.servers import PostgresServer, RedisClusterHandle, RedisServer


@pytest.fixture(scope="session")
def redis_handle() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@pytest.fixture(scope="session")
def redis_url(redis_handle: RedisServer) -> str:
    return redis_handle.url


@pytest.fixture(scope="session")
def redis_cluster_handle() -> Iterator[RedisClusterHandle]:
    with redis_cluster() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def postgres_handle() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_dsn(postgres_handle: PostgresServer) -> str:
    return postgres_handle.dsn
