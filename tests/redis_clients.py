"""Redis clients for the tests, kept out of the generated tests because they name ``redis.asyncio``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.retry
import redis.cluster
import redis.retry
from redis.backoff import NoBackoff

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from pyrate_limiter._typing import AsyncRedisClient, RedisClient
    from tests.servers import RedisClusterHandle


def redis_client(url: str, native: bool, retries: int | None = None, **options: Any) -> Any:  # Any: fits every bucket
    """A client for ``url``: the async one when ``native`` (asyncio), else the sync one.

    :param retries: retry a failed connection this many times at once, instead of redis-py's
        default backoff (seconds of retrying while a server is down).
    :param options: for the client (``socket_timeout``, ...).
    """
    if native:
        if retries is not None:
            options["retry"] = redis.asyncio.retry.Retry(NoBackoff(), retries)
        return redis.asyncio.Redis.from_url(url, **options)
    if retries is not None:
        options["retry"] = redis.retry.Retry(NoBackoff(), retries)
    return redis.Redis.from_url(url, **options)


def cluster_client(cluster: RedisClusterHandle, native: bool) -> Any:
    """A cluster client for ``cluster``: the async one when ``native`` (asyncio), else the sync one."""
    if native:
        nodes = [redis.asyncio.cluster.ClusterNode(host, port) for host, port in cluster.nodes]
        return redis.asyncio.cluster.RedisCluster(startup_nodes=nodes)
    host, port = cluster.nodes[0]
    return redis.cluster.RedisCluster(host=host, port=port)


def close_client(client: AsyncRedisClient | RedisClient) -> Awaitable[None] | None:
    """Close ``client``: returns the awaitable to await for an async client."""
    if isinstance(client, redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster):
        return client.aclose()
    client.close()
    return None
