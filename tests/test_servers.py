"""The server helpers start real, working servers and restart them in place, so backend failures mean
backend bugs rather than a broken test harness."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

import psycopg
import pytest
import redis
from redis.cluster import RedisCluster

from tests.servers import redis_server

if TYPE_CHECKING:
    from tests.servers import PostgresServer, RedisClusterHandle, RedisServer


def test_redis_server_stores_and_returns_a_value(redis_url: str) -> None:
    with redis.Redis.from_url(redis_url) as client:
        client.set("servers:probe", "1")
        assert client.get("servers:probe") == b"1"


def test_redis_restart_keeps_the_port_and_an_open_client_recovers(redis_handle: RedisServer) -> None:
    port = redis_handle.port
    with redis.Redis.from_url(redis_handle.url) as client:
        assert client.ping()
        try:
            redis_handle.stop()
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
        finally:
            redis_handle.start()
        assert redis_handle.port == port
        client.set("servers:after-restart", "1")
        assert client.get("servers:after-restart") == b"1"


def test_redis_cluster_serves_keys_from_all_three_masters(redis_cluster_handle: RedisClusterHandle) -> None:
    host, port = redis_cluster_handle.nodes[0]
    with RedisCluster(host=host, port=port) as cluster:
        keys = [f"servers:{i}" for i in range(30)]
        for key in keys:
            cluster.set(key, key)
        assert [cluster.get(key) for key in keys] == [key.encode() for key in keys]
        owners = {cluster.get_node_from_key(key).name for key in keys}
    assert owners == {f"{host}:{port}" for host, port in redis_cluster_handle.nodes}


def test_postgres_answers_a_query(postgres_dsn: str) -> None:
    with psycopg.connect(postgres_dsn) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_postgres_restart_keeps_the_port_and_the_data(postgres_handle: PostgresServer) -> None:
    port = postgres_handle.port
    with psycopg.connect(postgres_handle.dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE servers_restart_probe (n int)")
        conn.execute("INSERT INTO servers_restart_probe VALUES (7)")
    try:
        postgres_handle.restart()
        assert postgres_handle.port == port
        with psycopg.connect(postgres_handle.dsn) as conn:
            assert conn.execute("SELECT n FROM servers_restart_probe").fetchall() == [(7,)]
    finally:
        postgres_handle.start()
        with psycopg.connect(postgres_handle.dsn, autocommit=True) as conn:
            conn.execute("DROP TABLE servers_restart_probe")


def test_redis_server_is_gone_after_its_block() -> None:
    with redis_server() as server:
        port = server.port
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
