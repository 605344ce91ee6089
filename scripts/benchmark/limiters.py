"""The limiters the scenarios drive, built through the v3 API so that the same code runs against
ours and against upstream 3.9.0 (``pl`` is whichever ``pyrate_limiter`` the worker imported)."""

from __future__ import annotations

import tempfile
from typing import TYPE_CHECKING, Any

from .measure import unique

if TYPE_CHECKING:
    import contextlib
    from collections.abc import Callable

    from .measure import Row


def ours(pl: Any) -> bool:
    return hasattr(pl, "AsyncLimiter")


def big(pl: Any) -> list[Any]:
    """A rate no run ever fills: every acquire is admitted."""
    return [pl.Rate(10**9, pl.Duration.HOUR)]


def three(pl: Any) -> list[Any]:
    hour = pl.Duration.HOUR
    return [pl.Rate(10**7, pl.Duration.SECOND), pl.Rate(10**8, pl.Duration.MINUTE), pl.Rate(10**9, hour)]


def per_key_factory(
    pl: Any,
    rates_for: Callable[[str], list[Any]],
    wrap_async: bool = False,
    make: Callable[[str, list[Any]], Any] | None = None,
) -> Any:
    """A v3 ``BucketFactory`` subclass making one in-memory bucket per item name (async ones if asked),
    or whatever ``make(name, rates)`` makes, unleaked."""
    clock = pl.TimeClock()

    class PerKey(pl.BucketFactory):  # type: ignore[misc]
        def __init__(self) -> None:
            self.buckets: dict[str, Any] = {}

        def wrap_item(self, name: str, weight: int = 1) -> Any:
            return pl.RateItem(name, clock.now(), weight=weight)

        def get(self, item: Any) -> Any:
            bucket = self.buckets.get(item.name)
            if bucket is None:
                rates = rates_for(item.name)
                if make is not None:
                    bucket = make(item.name, rates)
                elif not wrap_async:
                    bucket = self.create(clock, pl.InMemoryBucket, rates)
                else:  # unleaked on both sides: the sync factory's leak thread cannot await
                    wrapped = pl.BucketAsyncWrapper(pl.InMemoryBucket(rates)) if not ours(pl) else None
                    bucket = wrapped or pl.AsyncInMemoryBucket(rates)
                self.buckets[item.name] = bucket
            return bucket

    return PerKey()


def async_limiter(pl: Any, argument: Any, **kwargs: Any) -> Any:
    """Ours: ``AsyncLimiter``; upstream: its one ``Limiter`` over async buckets, awaited."""
    return (pl.AsyncLimiter if ours(pl) else pl.Limiter)(argument, **kwargs)


def build(pl: Any, p: Row, rates: list[Any], stack: contextlib.ExitStack, **options: Any) -> tuple[Any, Any]:
    """A sync limiter on ``p["backend"]``, made with ``options``, and its client (Redis) or ``None``;
    cleanup goes on ``stack``."""
    backend, client = p["backend"], None
    if backend == "memory":
        return pl.Limiter(rates, **options), None
    if backend == "redis":
        import redis

        client = stack.enter_context(redis.Redis.from_url(p["redis_url"]))
        bucket = pl.RedisBucket.init(rates, client, unique("bench"))
        stack.callback(bucket.flush)
    elif backend == "sqlite":
        directory = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-sqlite-"))
        bucket = pl.SQLiteBucket.init_from_file(rates, table="bench", db_path=f"{directory}/bench.sqlite")
        stack.callback(getattr(bucket, "close", None) or bucket.conn.close)
    else:
        from psycopg_pool import ConnectionPool

        pool = stack.enter_context(ConnectionPool(p["dsn"], min_size=1, max_size=2, open=True))
        bucket = pl.PostgresBucket(pool, unique("bench"), rates, **postgres_options(pl, p))
    limiter = pl.Limiter(bucket, **options)
    stack.callback(limiter.dispose, bucket)  # before its connection closes: the leak thread must let go
    return limiter, client


def postgres_options(pl: Any, p: Row) -> Row:
    """Ours' ``PostgresBucket`` keywords a scenario asks for (``durable``); upstream has none."""
    return {"durable": p["durable"]} if "durable" in p and ours(pl) else {}
