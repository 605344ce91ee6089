"""The logs the entries and weight curves fill and time, one per backend: a bucket behind a sync
``Limiter``, a fill of ``n`` entries that is fast even for 10**6, and the memory that fill took."""

from __future__ import annotations

import gc
import tempfile
import time
import tracemalloc
from typing import TYPE_CHECKING, Any

from .measure import unique

if TYPE_CHECKING:
    import contextlib
    from collections.abc import Callable

    from .measure import Row

FILL_BATCH = 5000  # requests per Redis script call while filling


class MemoryLog:
    """The in-memory bucket behind a ``Limiter``; memory is what ``tracemalloc`` sees the fill allocate."""

    cpu = True
    memory_how = "tracemalloc"

    def __init__(self, pl: Any, p: Row, rates: list[Any], stack: contextlib.ExitStack) -> None:
        self.bucket = pl.InMemoryBucket(rates)
        limiter = pl.Limiter(self.bucket)
        stack.callback(limiter.dispose, self.bucket)
        self.acquire: Callable[[str, int], Any] = limiter.try_acquire

    def clear(self) -> None:
        self.bucket.flush()

    def fill(self, n: int, weight: int) -> None:
        self.bucket.flush()
        acquire = self.acquire
        for _ in range(n):
            acquire("k", weight)

    def measured_fill(self, n: int, weight: int) -> int:
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            self.fill(n, weight)
            gc.collect()
            return tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()

    def entries(self, weight: int) -> int:
        return int(self.bucket.count()) // weight  # an entry per item here


class RedisLog:
    """A ``RedisBucket`` on the benchmark's own server; memory is the growth of ``INFO memory`` used_memory.

    A clock one ms further on at each reading gives every item its own entry (Redis merges items
    of one ms and name). The fill sends the bucket's own requests, ``FILL_BATCH`` to a script call
    (the batch the async bucket sends under concurrency, made bigger), so the script records them
    by the same rule without a round trip each.
    """

    cpu = False
    memory_how = "Redis used_memory"

    def __init__(self, pl: Any, p: Row, rates: list[Any], stack: contextlib.ExitStack) -> None:
        import redis

        self.client = stack.enter_context(redis.Redis.from_url(p["redis_url"]))
        self.clock = Ticking()
        self.key = unique("curve")
        self.bucket = pl.RedisBucket.init(rates, self.client, self.key)
        stack.callback(self.bucket.flush)
        limiter = pl.Limiter(self.bucket, clock=self.clock)
        stack.callback(limiter.dispose, self.bucket)
        self.acquire: Callable[[str, int], Any] = limiter.try_acquire

    def clear(self) -> None:
        self.bucket.flush()

    def fill(self, n: int, weight: int) -> None:
        from pyrate_limiter._drivers.redis import request

        self.bucket.flush()
        start = self.clock.take(n)
        for first in range(0, n, FILL_BATCH):
            times = range(start + first, start + min(n, first + FILL_BATCH))
            self.bucket._reserve_all([request(t, weight, -1, "k") for t in times])

    def measured_fill(self, n: int, weight: int) -> int:
        before = used_memory(self.client)
        self.fill(n, weight)
        return used_memory(self.client) - before

    def entries(self, weight: int) -> int:
        return int(self.client.zcard(self.key))  # the log lives at the bucket's own key


class SQLiteLog:
    """A ``SQLiteBucket`` on a file; memory is the growth of the file, checkpointed, as the fill adds rows.

    The fill writes the rows in the table layout the bucket documents (``cum``, ``ts``, ``weight``,
    ``name``), in one transaction on the bucket's own connection (its page cache stays valid, as
    after its own writes); the ticking clock goes on from there.
    """

    cpu = False
    memory_how = "SQLite file size"

    def __init__(self, pl: Any, p: Row, rates: list[Any], stack: contextlib.ExitStack) -> None:
        directory = stack.enter_context(tempfile.TemporaryDirectory(prefix="curve-sqlite-"))
        path = f"{directory}/curve.sqlite"
        self.clock = Ticking()
        bucket = pl.SQLiteBucket.init_from_file(rates, table="curve", db_path=path)
        stack.callback(getattr(bucket, "close", None) or bucket.conn.close)
        limiter = pl.Limiter(bucket, clock=self.clock)
        stack.callback(limiter.dispose, bucket)
        self.acquire: Callable[[str, int], Any] = limiter.try_acquire
        self.writer = bucket.conn  # isolation_level=None; nothing else uses it while this one does

    def clear(self) -> None:
        self.writer.execute('DELETE FROM "curve"')

    def fill(self, n: int, weight: int) -> None:
        start, writer = self.clock.take(n), self.writer
        writer.execute("BEGIN IMMEDIATE")
        writer.execute('DELETE FROM "curve"')
        rows = ((weight * (i + 1), start + i, weight, "k") for i in range(n))
        writer.executemany('INSERT INTO "curve" (cum, ts, weight, name) VALUES (?, ?, ?, ?)', rows)
        writer.execute("COMMIT")

    def measured_fill(self, n: int, weight: int) -> int:
        before = self.size()
        self.fill(n, weight)
        return self.size() - before

    def size(self) -> int:
        self.writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        pages = self.writer.execute("PRAGMA page_count").fetchone()[0]
        return int(pages * self.writer.execute("PRAGMA page_size").fetchone()[0])

    def entries(self, weight: int) -> int:
        return int(self.writer.execute('SELECT count(*) FROM "curve" WHERE weight > 0').fetchone()[0])


LOGS: dict[str, Any] = {"memory": MemoryLog, "redis": RedisLog, "sqlite": SQLiteLog}


class Ticking:
    """A clock one ms further on at each reading, starting now."""

    def __init__(self) -> None:
        self.t = time.time_ns() // 1_000_000

    def now(self) -> int:
        self.t += 1
        return self.t

    def take(self, n: int) -> int:
        """Skip ``n`` readings (for entries written meanwhile); return the first of them."""
        first = self.t + 1
        self.t += n
        return first


def used_memory(client: Any) -> int:
    return int(client.info("memory")["used_memory"])
