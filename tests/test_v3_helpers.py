"""3.9's module-level helpers run as 3.x code calls them: ``limiter_factory``, the query classes
of its SQL backends, ``Leaker`` and the small utilities (the classes: ``test_v3_compat.py``)."""

from __future__ import annotations

import sqlite3
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest

from pyrate_limiter import (
    AsyncInMemoryBucket,
    AsyncLimiter,
    BucketAsyncWrapper,
    Duration,
    InMemoryBucket,
    Leaker,
    Limiter,
    MultiprocessBucket,
    PgQueries,
    PostgresBucket,
    Rate,
    RateItem,
    SingleBucketFactory,
    SQLiteBucket,
    SQLiteClock,
    SQLiteQueries,
    TimeClock,
    binary_search,
    combined_lock,
    dedicated_sqlite_clock_connection,
    id_generator,
    limiter_factory,
)

from .fake_clock import T0

if TYPE_CHECKING:
    from pathlib import Path


def test_create_sqlite_bucket_and_limiter_with_3x_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bucket = limiter_factory.create_sqlite_bucket([Rate(2, 1000)], tmp_path / "f.sqlite", use_file_lock=True)
    assert isinstance(bucket, SQLiteBucket)
    assert bucket.table == "pyrate_limiter"
    bucket.close()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # db_path=None: the default file, here
    for limiter in (limiter_factory.create_sqlite_limiter(), limiter_factory.create_inmemory_limiter()):
        assert isinstance(limiter, Limiter)
        assert (limiter.raise_when_fail, limiter.max_delay, limiter.buffer_ms) == (False, Duration.DAY, 50)
        assert limiter.retry_until_max_delay
        (made,) = limiter.buckets()
        assert made.rates == [Rate(3, Duration.SECOND)]
        assert [limiter.try_acquire("k") for _ in range(3)] == [True, True, True]
        made.close()
    assert isinstance(made, InMemoryBucket)
    sqlite_bucket: Any
    (sqlite_bucket,) = limiter_factory.create_sqlite_limiter(db_path=tmp_path / "g.sqlite").buckets()
    assert isinstance(sqlite_bucket, SQLiteBucket)
    assert sqlite_bucket.table == "rate_bucket"
    sqlite_bucket.close()


async def test_factory_limiters_with_async_wrapper(tmp_path: Path) -> None:
    limiters = [
        limiter_factory.create_inmemory_limiter(5, Duration.MINUTE, async_wrapper=True),
        limiter_factory.create_sqlite_limiter(5, Duration.MINUTE, tmp_path / "a.sqlite", async_wrapper=True),
    ]
    for limiter in limiters:
        assert isinstance(limiter, AsyncLimiter)
        (bucket,) = limiter.buckets()
        assert isinstance(bucket, BucketAsyncWrapper)
        assert [await limiter.try_acquire_async("k", 2) for _ in range(2)] == [True, True]
        assert await bucket.count() == 4
        await bucket.aclose()


def test_init_global_limiter_sets_the_process_limiter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limiter_factory, "LIMITER", None)
    bucket = InMemoryBucket([Rate(1, 1000)])
    limiter_factory.init_global_limiter(bucket)
    limiter = limiter_factory.LIMITER
    assert isinstance(limiter, Limiter)
    assert (limiter.max_delay, limiter.raise_when_fail, limiter.retry_until_max_delay, limiter.buffer_ms) == (
        Duration.HOUR, False, True, 50,
    )  # fmt: skip
    assert limiter.buckets() == [bucket]
    limiter_factory.init_global_limiter(AsyncInMemoryBucket([Rate(1, 1000)]), raise_when_fail=True)
    assert isinstance(limiter_factory.LIMITER, AsyncLimiter)


async def test_multiprocess_bucket_in_one_process_with_both_acquires() -> None:
    bucket = MultiprocessBucket.init([Rate(2, Duration.MINUTE)])
    limiter = Limiter(bucket, raise_when_fail=False)
    assert limiter.try_acquire("k")
    assert await limiter.try_acquire_async("k")
    assert not limiter.try_acquire("k")
    assert bucket.limiter_lock() is None
    bucket.close()


def test_sqlite_queries_read_our_table(tmp_path: Path) -> None:
    table = f"t_{id_generator()}"
    bucket = SQLiteBucket.init_from_file([Rate(10, Duration.MINUTE)], table, tmp_path / "q.sqlite")
    bucket.put(RateItem("a", T0))
    bucket.put(RateItem("b", T0 + 1, 2))
    conn = sqlite3.connect(tmp_path / "q.sqlite")
    assert conn.execute(SQLiteQueries.COUNT_ALL.format(table=table)).fetchone() == (bucket.count(),)
    assert conn.execute(SQLiteQueries.PEEK.format(table=table, count=0)).fetchone() == ("b", T0 + 1)
    assert conn.execute(SQLiteQueries.GET_FIRST_ITEM.format(table=table)).fetchone() == ("a", T0)
    assert conn.execute(SQLiteQueries.GET_ALL_ITEM.format(table=table)).fetchall() == [("a", T0, 1), ("b", T0 + 1, 2)]
    conn.execute(SQLiteQueries.FLUSH.format(table=table))
    conn.commit()
    assert bucket.count() == 0
    conn.execute(SQLiteQueries.DROP_TABLE.format(table=table))
    conn.execute(SQLiteQueries.CREATE_BUCKET_TABLE.format(table=table))
    conn.commit()
    conn.close()
    assert bucket.put(RateItem("c", T0))
    assert bucket.count() == 1
    bucket.close()


def test_pg_queries_read_our_table(postgres_dsn: str) -> None:
    from psycopg_pool import ConnectionPool

    table = f"t_{id_generator()}"
    with ConnectionPool(postgres_dsn, min_size=1, max_size=2, open=True) as pool:
        bucket = PostgresBucket(pool, table, [Rate(10, Duration.MINUTE)])
        bucket.put(RateItem("a", T0))
        bucket.put(RateItem("b", T0 + 1, 2))
        with pool.connection() as conn:
            assert conn.execute(PgQueries.COUNT.format(table=table)).fetchone() == (3,)
            assert conn.execute(PgQueries.PEEK.format(table=table, offset=0)).fetchone() == ("b", 2, T0 + 1)
            assert conn.execute(PgQueries.LEAK_COUNT.format(table=table, timestamp=T0 + 1)).fetchone() == (1,)
            conn.execute(PgQueries.FLUSH.format(table=table))
        assert bucket.count() == 0
        with pool.connection() as conn:
            conn.execute(PgQueries.DROP_TABLE.format(table=table))
            conn.execute(PgQueries.CREATE_BUCKET_TABLE.format(table=table))
            assert conn.execute(PgQueries.COUNT.format(table=table)).fetchone() == (0,)
            conn.execute(PgQueries.DROP_TABLE.format(table=table))


def test_small_v3_helpers() -> None:
    items = [RateItem("k", ts) for ts in (10, 20, 20, 30)]
    assert [binary_search(items, value) for value in (5, 10, 15, 20, 30, 31)] == [0, 0, 1, 1, 3, -1]
    assert binary_search([], 5) == 0
    locks: list[Any] = [threading.Lock(), threading.RLock()]
    with combined_lock(locks):
        assert locks[0].locked()
    assert not locks[0].locked()
    locks[0].acquire()
    with pytest.raises(TimeoutError), combined_lock(locks[::-1], timeout_sec=0.01):
        pass
    locks[0].release()
    conn = dedicated_sqlite_clock_connection()
    assert abs(SQLiteClock(conn).now() - time.time() * 1000) < 5000
    conn.close()
    bucket = InMemoryBucket([Rate(1, 1000)])
    factory = SingleBucketFactory(bucket, TimeClock())
    assert factory.get_buckets() == [bucket]
    factory.close()


def test_leaker_leaks_registered_buckets() -> None:
    bucket = InMemoryBucket([Rate(5, 10)])
    bucket.put(RateItem("k", 0))
    leaker = Leaker(leak_interval=5)
    leaker.register(bucket, TimeClock())
    leaker.start()
    while bucket.count():  # the thread leaks the item, old by any clock
        time.sleep(0.005)
    assert leaker.deregister(id(bucket))
    assert not leaker.deregister(id(bucket))
    leaker.join()  # with nothing left to leak, the thread ends
