"""PostgreSQL buckets shared by processes and machines: each decision is one call of a per-table
PL/pgSQL function that holds a per-bucket advisory lock, and a clock reading the server's time."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from ..._concurrency import arun_blocking
from ..._errors import BackendError
from ..._rate import RateItem, check_rates
from ..clocks import AsyncAbstractClock
from .base import AsyncAbstractBucket

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from psycopg_pool import AsyncConnectionPool, ConnectionPool

    from ..._rate import Rate

    Params = Sequence[Any] | Mapping[str, Any] | None
    Steps = Sequence[tuple[bytes, Params]]

DEFAULT_KEY = "default"
"""The bucket key used when none is given: one bucket per table."""

_MAX_IDENTIFIER = 63  # PostgreSQL silently truncates longer names: two tables would become one


class AsyncPostgresBucket(AsyncAbstractBucket):
    """One bucket stored in a PostgreSQL table, shared by every process that names the same table and key.

    A decision is one round trip: a function created with the table decides and records under a
    transaction-level advisory lock on this bucket alone, so buckets never wait for each other and
    a held lock is waited for, never read as a full bucket. The table (in the connection's current
    schema) holds one row per admitted item (``bucket, name, ts, weight, cum``: epoch ms and a
    running total of weight) and is created, with its function and indexes, on first use. Rows
    stay one window longer than the rates need, so that an item up to a window late (clock skew
    between machines) is still judged exactly; ``leak`` removes them at once.

    :param pool: a ``psycopg_pool.ConnectionPool``; the async bucket also takes an async pool,
        awaited natively (on an event loop that pool cannot run on, give it the sync pool: its
        calls then run in worker threads). Give it ``check=ConnectionPool.check_connection`` to
        replace connections a server restart broke before they fail a call.
    :param table: the table's name, used as a quoted identifier (at most 63 bytes).
    :param key: the bucket's name in that table, so that several buckets share one table.
    :raises BackendError: from every method, when the server or the connection fails.
    """

    def __init__(
        self,
        pool: AsyncConnectionPool[Any] | ConnectionPool[Any],
        table: str,
        rates: list[Rate],
        *,
        key: str = DEFAULT_KEY,
    ) -> None:
        self.rates = check_rates(rates)
        self.failing_rate = None
        self.table = _check_name("table", table, empty=False)
        self.key = _check_name("key", key, empty=True)
        if len(table.encode()) > _MAX_IDENTIFIER:
            raise ValueError(f"table must be at most {_MAX_IDENTIFIER} bytes, got {table!r}")
        self.lock_key = advisory_key(table, key)
        """The advisory lock every decision on this bucket holds (a stable hash of table and key)."""
        self._pool = _Pool(pool, "PostgresBucket")
        from psycopg import sql  # after _Pool: it explains a missing driver

        self._limits = [rate.limit for rate in self.rates]
        self._intervals = [rate.interval for rate in self.rates]
        self._longest = self._intervals[-1]
        ident = {
            "table": sql.Identifier(table),
            "function": sql.Identifier(_derived_name(table, "decide")),
            "ts_index": sql.Identifier(_derived_name(table, "ts")),
            "cum_index": sql.Identifier(_derived_name(table, "cum")),
        }
        # Statements sent with parameters have their "%" parsed as placeholders, even inside a
        # quoted identifier: there the table's name is escaped; statements without are sent as is.
        table_sql = sql.SQL(sql.Identifier(table).as_string(None).replace("%", "%%"))

        def render(query: str) -> bytes:
            return sql.SQL(query).format(**{**ident, "table": table_sql}).as_bytes(None)

        body = sql.Literal(sql.SQL(_DECIDE_BODY).format(**ident).as_string(None))
        self._setup: Steps = [
            (_LOCK, [advisory_key(table, "\0setup")]),  # a NUL-free key can never be this one
            *((sql.SQL(query).format(**ident).as_bytes(None), None) for query in _SETUP),
            (sql.SQL(_DECIDE_HEAD).format(body=body, **ident).as_bytes(None), None),
        ]
        self._decide_sql = render(_DECIDE_CALL)
        self._lock_sql = _LOCK
        self._count_sql = render(_COUNT)
        self._peek_sql = render(_PEEK)
        self._leak_sql = render(_LEAK)
        self._flush_sql = render(_FLUSH)
        self._release_sql = render(_RELEASE)

    async def put(self, item: RateItem) -> bool:
        _, self.failing_rate = await self._decide(item, None, record=True)
        return self.failing_rate is None

    async def reserve(self, item: RateItem, max_delay: int | None) -> tuple[int, Rate | None]:
        return await self._decide(item, max_delay, record=True)

    async def waiting(self, item: RateItem) -> int:
        delay, _ = await self._decide(item, None, record=False)
        return delay

    async def release(self, item: RateItem) -> None:
        params = {"bucket": self.key, "ts": item.timestamp, "weight": item.weight, "name": _name(item)}
        await self._locked(self._release_sql, params)

    async def leak(self, current_timestamp: int | None = None) -> int:
        if current_timestamp is None:
            return 0  # v3: no time given, nothing is known to be outdated
        row = await self._locked(self._leak_sql, [self.key, current_timestamp - self._longest])
        return 0 if row is None else int(row[0])

    async def flush(self) -> None:
        await self._locked(self._flush_sql, [self.key])
        self.failing_rate = None

    async def count(self) -> int:
        row = await self._pool.run([(self._count_sql, {"bucket": self.key})], self._setup)
        return 0 if row is None else int(row[0])

    async def peek(self, index: int) -> RateItem | None:
        if index < 0:
            return None
        row = await self._pool.run([(self._peek_sql, {"bucket": self.key, "index": index})], self._setup)
        return None if row is None else RateItem(row[0], int(row[1]))

    async def _decide(self, item: RateItem, max_delay: int | None, *, record: bool) -> tuple[int, Rate | None]:
        params = [
            self.lock_key, self.key, _name(item), item.timestamp, item.weight, max_delay,
            self._limits, self._intervals, record,
        ]  # fmt: skip
        row = await self._pool.run([(self._decide_sql, params)], self._setup)
        assert row is not None
        return int(row[0]), None if row[1] is None else self.rates[row[1]]

    async def _locked(self, query: bytes, params: Params) -> tuple[Any, ...] | None:
        """Run ``query`` in a transaction holding this bucket's lock (two round trips: not a decision)."""
        return await self._pool.run([(self._lock_sql, [self.lock_key]), (query, params)], self._setup)


class AsyncPostgresClock(AsyncAbstractClock):
    """The PostgreSQL server's clock, so that processes on machines with skewed clocks agree.

    Read as epoch milliseconds from ``clock_timestamp()``: a ``timestamptz``, hence free of any
    time-zone setting. Takes the same pools as ``AsyncPostgresBucket``.
    """

    def __init__(self, pool: AsyncConnectionPool[Any] | ConnectionPool[Any]) -> None:
        self._pool = _Pool(pool, "PostgresClock")

    async def now(self) -> int:
        row = await self._pool.run([(_NOW, None)])
        assert row is not None
        return int(row[0])


def advisory_key(table: str, key: str) -> int:
    """A stable signed 64-bit hash of ``table`` and ``key``: the bucket's advisory lock."""
    digest = hashlib.blake2b(f"{table}\0{key}".encode(), digest_size=8, person=b"pyrate-lock").digest()
    return int.from_bytes(digest, "big", signed=True)


class _Pool:
    """Runs statements on a pool: awaited on an async pool, in a worker thread on a sync one.

    Each call is one transaction; a single statement runs in autocommit so that it is one round
    trip (no BEGIN/COMMIT), and the connection's own setting is restored before it goes back.
    """

    def __init__(self, pool: AsyncConnectionPool[Any] | ConnectionPool[Any], owner: str) -> None:
        try:
            import psycopg
            from psycopg_pool import AsyncConnectionPool, ConnectionPool
        except ImportError as error:
            raise ImportError(f"{owner} needs psycopg and psycopg_pool: pip install 'psycopg[pool]'") from error

        # Decided once: the async twin awaits an asyncio pool natively and runs a sync pool's
        # blocking calls in worker threads (the only way under trio).
        if isinstance(pool, AsyncConnectionPool):
            self._native: AsyncConnectionPool[Any] | None = pool
            self._blocking: ConnectionPool[Any] | None = None
        elif isinstance(pool, ConnectionPool):
            self._native, self._blocking = None, pool
        else:
            raise TypeError(f"pool must be a psycopg_pool connection pool for {owner}, got {pool!r}")
        self._owner = owner
        self._error = psycopg.Error
        self._missing = (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedFunction)

    async def run(self, steps: Steps, setup: Steps | None = None) -> tuple[Any, ...] | None:
        """Run ``steps`` in one transaction and return the last one's first row.

        :param setup: statements creating what is missing, run once when a step finds no table
            or function, before the steps run again.
        :raises BackendError: the server or the connection failed; nothing was recorded.
        """
        try:
            try:
                return await self._run(steps)
            except self._missing:
                if setup is None:
                    raise
            await self._run(setup)
            return await self._run(steps)
        except self._error as error:
            raise BackendError(f"the PostgreSQL backend of {self._owner} failed: {error}") from error

    async def _run(self, steps: Steps) -> tuple[Any, ...] | None:
        if self._native is None:
            return await arun_blocking(self._run_blocking, steps)
        row = None
        async with self._native.connection() as conn:
            autocommit = conn.autocommit
            if not autocommit:
                await conn.set_autocommit(True)
            try:
                if len(steps) == 1:
                    cursor = await conn.execute(*steps[0])
                    row = await cursor.fetchone() if cursor.description else None
                else:
                    async with conn.transaction():
                        for query, params in steps:
                            cursor = await conn.execute(query, params)
                        row = await cursor.fetchone() if cursor.description else None
            finally:
                if not autocommit and not conn.closed:
                    await conn.set_autocommit(False)
        return row

    def _run_blocking(self, steps: Steps) -> tuple[Any, ...] | None:
        assert self._blocking is not None
        row = None
        with self._blocking.connection() as conn:
            autocommit = conn.autocommit
            if not autocommit:
                conn.set_autocommit(True)
            try:
                if len(steps) == 1:
                    cursor = conn.execute(*steps[0])
                    row = cursor.fetchone() if cursor.description else None
                else:
                    with conn.transaction():
                        for query, params in steps:
                            cursor = conn.execute(query, params)
                        row = cursor.fetchone() if cursor.description else None
            finally:
                if not autocommit and not conn.closed:
                    conn.set_autocommit(False)
        return row


def _check_name(what: str, value: str, *, empty: bool) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, got {value!r}")
    if "\0" in value or (not value and not empty):
        raise ValueError(f"{what} must be a non-empty str without NUL characters, got {value!r}")
    return value


def _name(item: RateItem) -> str:
    name = str(item.name)
    if "\0" in name:
        raise ValueError(f"item names stored in PostgreSQL cannot hold NUL characters, got {item.name!r}")
    return name


def _derived_name(table: str, suffix: str) -> str:
    # A fixed-length name per table for its function and indexes: the table's own name may be 63 bytes.
    digest = hashlib.blake2b(table.encode(), digest_size=8, person=b"pyrate-table").hexdigest()
    return f"pyrate_limiter_v1_{digest}_{suffix}"


_LOCK = b"SELECT pg_advisory_xact_lock(%s::bigint)"

_NOW = b"SELECT floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint"

_SETUP = [
    "CREATE TABLE IF NOT EXISTS {table} (bucket text NOT NULL, name text NOT NULL, ts bigint NOT NULL, "
    "weight bigint NOT NULL, cum bigint NOT NULL)",
    # (bucket, ts, cum) trims and inserts out of order; (bucket, cum) finds where a window starts.
    "CREATE INDEX IF NOT EXISTS {ts_index} ON {table} (bucket, ts, cum)",
    "CREATE INDEX IF NOT EXISTS {cum_index} ON {table} (bucket, cum)",
]

_DECIDE_HEAD = """
CREATE OR REPLACE FUNCTION {function}(
    p_lock bigint, p_bucket text, p_name text, p_t bigint, p_weight bigint, p_max_delay bigint,
    p_limits bigint[], p_intervals bigint[], p_record boolean, OUT delay bigint, OUT rate integer)
LANGUAGE plpgsql AS {body}
"""

# The rule of pyrate_limiter._window, step for step. Each statement of a PL/pgSQL function takes a
# fresh snapshot, so everything after the lock sees what the previous holder committed.
_DECIDE_BODY = """
DECLARE
    v_total bigint := 0;
    v_base bigint := 0;
    v_last bigint;
    v_at bigint := p_t;
    v_need bigint;
    v_fits bigint;
    v_prev bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(p_lock);
    IF p_record THEN
        -- One window more than the rule needs: an item up to a window late (clock skew between
        -- processes) must still count the rows a newer decision has passed over.
        DELETE FROM {table} WHERE bucket = p_bucket AND ts <= p_t - 2 * p_intervals[cardinality(p_intervals)];
    END IF;
    SELECT cum, ts INTO v_total, v_last FROM {table} WHERE bucket = p_bucket ORDER BY cum DESC LIMIT 1;
    IF FOUND THEN
        SELECT cum - weight INTO v_base FROM {table} WHERE bucket = p_bucket ORDER BY cum LIMIT 1;
    ELSE
        v_total := 0;
    END IF;
    FOR i IN 1 .. cardinality(p_limits) LOOP
        v_need := v_total + p_weight - p_limits[i];
        CONTINUE WHEN v_need <= v_base;
        IF p_weight > p_limits[i] THEN
            delay := -1;
            rate := i - 1;
            RETURN;
        END IF;
        SELECT ts + p_intervals[i] INTO v_fits FROM {table}
            WHERE bucket = p_bucket AND cum >= v_need ORDER BY cum LIMIT 1;
        IF v_fits > v_at THEN
            v_at := v_fits;
            rate := i - 1;
        END IF;
    END LOOP;
    delay := v_at - p_t;
    IF NOT p_record OR (rate IS NOT NULL AND (p_max_delay IS NULL OR delay > p_max_delay)) THEN
        RETURN;
    END IF;
    rate := NULL;
    IF p_weight = 0 THEN
        RETURN;  -- admitted, but a row of no weight would change no count: keeps running totals distinct
    END IF;
    IF v_last IS NULL OR v_at >= v_last THEN
        INSERT INTO {table} (bucket, name, ts, weight, cum)
            VALUES (p_bucket, p_name, v_at, p_weight, v_total + p_weight);
        RETURN;
    END IF;
    -- Older than the newest entry (clock skew, or behind a reservation): insert in order.
    SELECT cum INTO v_prev FROM {table} WHERE bucket = p_bucket AND ts <= v_at ORDER BY ts DESC, cum DESC LIMIT 1;
    IF NOT FOUND THEN
        v_prev := v_base;
    END IF;
    UPDATE {table} SET cum = cum + p_weight WHERE bucket = p_bucket AND ts > v_at;
    INSERT INTO {table} (bucket, name, ts, weight, cum) VALUES (p_bucket, p_name, v_at, p_weight, v_prev + p_weight);
END
"""

_DECIDE_CALL = (
    "SELECT delay, rate FROM {function}(%s::bigint, %s::text, %s::text, %s::bigint, %s::bigint, %s::bigint, "
    "%s::bigint[], %s::bigint[], %s::boolean)"
)

_COUNT = (
    "SELECT coalesce((SELECT cum FROM {table} WHERE bucket = %(bucket)s ORDER BY cum DESC LIMIT 1)"
    " - (SELECT cum - weight FROM {table} WHERE bucket = %(bucket)s ORDER BY cum LIMIT 1), 0)"
)

# The unit ``index`` places from the newest lies in the first row whose running total reaches it,
# unless that row starts at or after it: then the unit was trimmed (or never existed).
_PEEK = (
    "SELECT name, ts FROM (SELECT name, ts, cum - weight AS before, u.unit FROM {table}, (SELECT "
    "(SELECT cum FROM {table} WHERE bucket = %(bucket)s ORDER BY cum DESC LIMIT 1) - %(index)s::bigint AS unit) u"
    " WHERE bucket = %(bucket)s AND cum >= u.unit ORDER BY cum LIMIT 1) first WHERE before < unit"
)

_LEAK = (
    "WITH gone AS (DELETE FROM {table} WHERE bucket = %s AND ts <= %s RETURNING weight) "
    "SELECT coalesce(sum(weight), 0)::bigint FROM gone"
)

_FLUSH = "DELETE FROM {table} WHERE bucket = %s"

_RELEASE = (
    "WITH gone AS (DELETE FROM {table} WHERE ctid = (SELECT ctid FROM {table} WHERE bucket = %(bucket)s"
    " AND ts = %(ts)s AND weight = %(weight)s AND name = %(name)s ORDER BY cum DESC LIMIT 1) RETURNING cum) "
    "UPDATE {table} SET cum = cum - %(weight)s WHERE bucket = %(bucket)s AND cum > (SELECT cum FROM gone)"
)
