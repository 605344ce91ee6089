"""PostgreSQL buckets shared by processes and machines: each decision is one call of a per-table
PL/pgSQL function that holds a per-bucket advisory lock, and a clock reading the server's time."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from ..._concurrency import arun_blocking
from ..._errors import BackendError, reason
from ..._rate import RateItem, check_rates
from ..._window import NEVER, UNSTORABLE, span
from ..clocks import AsyncAbstractClock
from .base import AsyncReservingBucket

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from psycopg_pool import AsyncConnectionPool, ConnectionPool

    from ..._rate import Rate

    Params = Sequence[Any] | Mapping[str, Any] | None
    Steps = Sequence[tuple[bytes, Params]]

LOCK_TIMEOUT = 5000
"""How long (ms) a decision with no ``max_delay`` waits for another connection holding this
bucket's lock (or its table) before it raises ``BackendError``; with one, ``max_delay`` does,
but no less than ``LOCK_WAIT_MIN``."""

LOCK_WAIT_MIN = 1000
"""The least a decision waits for the bucket's lock, whatever its ``max_delay``: decisions of
concurrent callers queue on that lock in normal work, and must not read as an outage."""

_MAX_LOCK_TIMEOUT = 2**31 - 1

DEFAULT_KEY = "default"
"""The bucket key used when none is given: one bucket per table."""

_MAX_IDENTIFIER = 63  # PostgreSQL silently truncates longer names: two tables would become one


class AsyncPostgresBucket(AsyncReservingBucket):
    """One bucket stored in a PostgreSQL table, shared by every process that names the same table and key.

    A decision is one round trip: a function created with the table decides and records under a
    transaction-level advisory lock on this bucket alone, so buckets never wait for each other and
    a held lock is waited for, never read as a full bucket. The table (in the connection's current
    schema) holds one row per admitted item (``bucket, name, ts, weight, cum``: epoch ms and a
    running total of weight) and a marker row per bucket (no name, no ``ts``: what trimming left,
    and where the oldest item is); it is created, with its functions and indexes, on first use.
    Decisions and ``leak`` trim the rows that can no longer count, stamped at or before
    ``t - longest interval - 1``; an item stamped before the newest trimmed stamp plus the longest
    interval plus 1 (clock skew between machines) is decided as arriving then, as in every backend.

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
        self._pool = _Pool(pool, f"PostgresBucket (table {table!r}, key {key!r})")
        from psycopg import sql  # after _Pool: it explains a missing driver

        self._limits = [rate.limit for rate in self.rates]
        # Spans, not intervals (an item counts at its stamp and the interval's ms after it: see
        # _window); the function's p_intervals receives them, so its arithmetic is the closed window.
        self._spans = [span(rate.interval) for rate in self.rates]
        self._longest = self._spans[-1]
        self._unstorable = max(UNSTORABLE, self._limits[-1])
        ident = {
            "table": sql.Identifier(table),
            # decide3: the function that also bounds its lock wait (p_lock_timeout).
            "function": sql.Identifier(_derived_name(table, "decide3")),
            "trim": sql.Identifier(_derived_name(table, "trim")),
            "ts_index": sql.Identifier(_derived_name(table, "ts")),
            "cum_index": sql.Identifier(_derived_name(table, "cum")),
        }
        # Statements sent with parameters have their "%" parsed as placeholders, even inside a
        # quoted identifier: there the table's name is escaped; statements without are sent as is.
        table_sql = sql.SQL(sql.Identifier(table).as_string(None).replace("%", "%%"))

        def render(query: str, **constants: int | list[int]) -> bytes:
            literals = {name: sql.SQL(_bigints(value)) for name, value in constants.items()}
            return sql.SQL(query).format(**{**ident, "table": table_sql}, **literals).as_bytes(None)

        def function(head: str, body: str) -> bytes:
            literal = sql.Literal(sql.SQL(body).format(**ident).as_string(None))
            return sql.SQL(head).format(body=literal, **ident).as_bytes(None)

        self._setup: Steps = [
            (_LOCK, [advisory_key(table, "\0setup")]),  # a NUL-free key can never be this one
            *((sql.SQL(query).format(**ident).as_bytes(None), None) for query in _SETUP),
            (function(_TRIM_HEAD, _TRIM_BODY), None),
            (function(_DECIDE_HEAD, _DECIDE_BODY), None),
        ]
        # The bucket's constants are part of the statement: fewer parameters to send each call.
        self._decide_sql = render(_DECIDE_CALL, lock=self.lock_key, limits=self._limits, intervals=self._spans)
        self._lock_sql = _LOCK
        self._count_sql = render(_COUNT)
        self._peek_sql = render(_PEEK)
        self._leak_sql = render(_LEAK)
        self._flush_sql = render(_FLUSH)
        self._release_sql = render(_RELEASE)

    async def reserve(self, item: RateItem, max_delay: int | None) -> tuple[int, Rate | None]:
        delay, rate, decided = await self._decide(item, max_delay, record=True)
        item.timestamp = decided  # later than its stamp when a trim overtook it
        return delay, rate

    async def waiting(self, item: RateItem) -> int:
        delay, rate, decided = await self._decide(item, None, record=False)
        # Fitting at once is fitting at the time decided at: later than a stamp behind the floor.
        return decided - item.timestamp if rate is None else delay

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

    async def _decide(self, item: RateItem, max_delay: int | None, *, record: bool) -> tuple[int, Rate | None, int]:
        """One call of the bucket's function: the delay, the refusing rate and the time decided at."""
        if item.weight > self._unstorable:
            return NEVER, self.rates[0], item.timestamp
        # The wait for another connection's hold on this bucket: the caller's max_delay when given,
        # but never below LOCK_WAIT_MIN (concurrent decisions queue on the lock in normal work).
        lock_timeout = LOCK_TIMEOUT if max_delay is None else min(max(LOCK_WAIT_MIN, max_delay), _MAX_LOCK_TIMEOUT)
        params = [self.key, _name(item), item.timestamp, item.weight, max_delay, record, lock_timeout]
        row = await self._pool.run([(self._decide_sql, params)], self._setup)
        assert row is not None
        delay, rate, decided = row[0]
        return delay, None if rate is None else self.rates[rate], decided

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
            raise BackendError(f"the PostgreSQL backend of {self._owner} failed: {reason(error)}") from error

    async def _run(self, steps: Steps) -> tuple[Any, ...] | None:
        if self._native is None:
            return await arun_blocking(self._run_blocking, steps)
        # getconn/putconn rather than connection(), whose exit also calls commit(): a no-op here, not free.
        conn = await self._native.getconn()
        try:
            autocommit = conn.autocommit
            if not autocommit:
                await conn.set_autocommit(True)
            try:
                cursor = _cursor(conn)
                if len(steps) == 1:
                    await cursor.execute(*steps[0])
                else:
                    async with conn.transaction():
                        for query, params in steps:
                            await cursor.execute(query, params)
                # rownumber, not description: that builds a column list each call.
                return None if cursor.rownumber is None else await cursor.fetchone()
            finally:
                if not autocommit and not conn.closed:
                    await conn.set_autocommit(False)
        finally:
            await self._native.putconn(conn)

    def _run_blocking(self, steps: Steps) -> tuple[Any, ...] | None:
        assert self._blocking is not None
        conn = self._blocking.getconn()
        try:
            autocommit = conn.autocommit
            if not autocommit:
                conn.set_autocommit(True)
            try:
                cursor = _cursor(conn)
                if len(steps) == 1:
                    cursor.execute(*steps[0])
                else:
                    with conn.transaction():
                        for query, params in steps:
                            cursor.execute(query, params)
                return None if cursor.rownumber is None else cursor.fetchone()
            finally:
                if not autocommit and not conn.closed:
                    conn.set_autocommit(False)
        finally:
            self._blocking.putconn(conn)


def _cursor(conn: Any) -> Any:
    """This module's cursor on ``conn``, made on its first use and kept with the connection.

    A cursor caches how to send and read each type; a new one per call would look them up
    again, a quarter of a decision's time in the client. Tuple rows, whatever the connection's
    row factory. The pool lends a connection to one caller at a time, and so this cursor.
    """
    kept = vars(conn)
    cursor = kept.get(_CURSOR)
    if cursor is None:
        from psycopg.rows import tuple_row

        cursor = kept[_CURSOR] = conn.cursor(row_factory=tuple_row)
    return cursor


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


def _bigints(value: int | list[int]) -> str:
    # Integers this module computed, never user text: safe as literals.
    if isinstance(value, int):
        return f"{int(value)}::bigint"
    return "ARRAY[" + ",".join(str(int(v)) for v in value) + "]::bigint[]"


def _derived_name(table: str, suffix: str) -> str:
    # A fixed-length name per table for its function and indexes: the table's own name may be 63 bytes.
    # "layout2": the table layout with the marker's oldest column; a function made for the first
    # layout is never reused (its table then fails clearly, on the missing column).
    digest = hashlib.blake2b(table.encode(), digest_size=8, person=b"pyrate-table").hexdigest()
    return f"pyrate_limiter_layout2_{digest}_{suffix}"


_CURSOR = "_pyrate_limiter_cursor"  # where a connection keeps the cursor of _cursor

_LOCK = b"SELECT pg_advisory_xact_lock(%s::bigint)"

_NOW = b"SELECT floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint"

_SETUP = [
    # ts is NULL only in a bucket's marker, made with its first item (no name either): weight =
    # the newest trimmed timestamp (NULL before a trim), cum = the weight ever trimmed (the base of
    # every running total), oldest = the oldest item's timestamp, or earlier (NULL: no item); the
    # column is NULL in items.
    "CREATE TABLE IF NOT EXISTS {table} (bucket text NOT NULL, name text, ts bigint, weight bigint, "
    "cum bigint NOT NULL, oldest bigint)",
    # Items are in the same order by ts as by cum; items of weight 0 share their predecessor's cum.
    # (bucket, ts, cum) finds both ends, trims and inserts out of order, and holds the marker last
    # (NULLS LAST), next to the newest item; (bucket, cum, weight DESC) finds where a window
    # starts: among equal totals, the row of weight comes first.
    "CREATE INDEX IF NOT EXISTS {ts_index} ON {table} (bucket, ts, cum)",
    "CREATE INDEX IF NOT EXISTS {cum_index} ON {table} (bucket, cum, weight DESC)",
]

_TRIM_HEAD = """
CREATE OR REPLACE FUNCTION {trim}(p_bucket text, p_horizon bigint, OUT trimmed bigint, OUT base bigint,
    OUT earliest bigint)
LANGUAGE plpgsql AS {body}
"""

# The caller holds the bucket's lock. Deletes the items at or before the horizon, records the
# newest of them and the oldest left in the marker; returns the weight deleted, the base and the
# oldest item after.
_TRIM_BODY = """
DECLARE
    v_ts bigint;
    v_cum bigint;
BEGIN
    WITH gone AS (
        DELETE FROM {table} WHERE bucket = p_bucket AND ts <= p_horizon RETURNING ts, cum, weight
    ) SELECT max(ts), max(cum), coalesce(sum(weight), 0) INTO v_ts, v_cum, trimmed FROM gone;
    SELECT ts INTO earliest FROM {table} WHERE bucket = p_bucket AND ts IS NOT NULL ORDER BY ts LIMIT 1;
    -- Written only when it changes: leaking an idle bucket writes nothing.
    UPDATE {table} SET weight = coalesce(v_ts, weight), cum = coalesce(v_cum, cum), oldest = earliest
        WHERE bucket = p_bucket AND ts IS NULL AND (v_ts IS NOT NULL OR oldest IS DISTINCT FROM earliest)
        RETURNING cum INTO base;
    IF NOT FOUND THEN
        SELECT cum INTO base FROM {table} WHERE bucket = p_bucket AND ts IS NULL;
    END IF;
    base := coalesce(base, 0);  -- no marker: the bucket never had an item
END
"""

_DECIDE_HEAD = """
CREATE OR REPLACE FUNCTION {function}(
    p_lock bigint, p_bucket text, p_name text, p_t bigint, p_weight bigint, p_max_delay bigint,
    p_limits bigint[], p_intervals bigint[], p_record boolean,  -- p_intervals: spans, interval + 1 each
    p_lock_timeout bigint)
RETURNS bigint[] LANGUAGE plpgsql AS {body}
"""

# The rule of pyrate_limiter._window, step for step. Each statement of a PL/pgSQL function takes a
# fresh snapshot, so everything after the lock sees what the previous holder committed. Returns
# [delay, index of the refusing rate or NULL, time decided at]: one array, not a row of OUT
# parameters, which the server would pass through a tuplestore.
_DECIDE_BODY = """
DECLARE
    delay bigint;
    rate bigint;
    decided bigint;
    v_longest bigint := p_intervals[cardinality(p_intervals)];
    v_now bigint := p_t;
    v_marked boolean;
    v_mark bigint;
    v_base bigint;
    v_oldest bigint;
    v_total bigint;
    v_last bigint;
    v_at bigint;
    v_need bigint;
    v_fits bigint;
    v_prev bigint;
BEGIN
    -- This statement's transaction only: a held lock is waited for at most p_lock_timeout ms.
    PERFORM set_config('lock_timeout', p_lock_timeout || 'ms', true);
    PERFORM pg_advisory_xact_lock(p_lock);
    -- One backward index scan reads all the state: the marker (it sorts last) and the newest
    -- item (the total).
    SELECT count(*) FILTER (WHERE ts IS NULL) > 0, max(weight) FILTER (WHERE ts IS NULL),
            coalesce(max(cum) FILTER (WHERE ts IS NULL), 0), max(oldest),
            max(cum) FILTER (WHERE ts IS NOT NULL), max(ts)
        INTO v_marked, v_mark, v_base, v_oldest, v_total, v_last
        FROM (SELECT ts, weight, cum, oldest FROM {table} WHERE bucket = p_bucket
            ORDER BY ts DESC, cum DESC LIMIT 2) f;
    -- Nothing is judged before the marker plus the longest interval: the windows of an earlier
    -- item would reach back over trimmed rows.
    IF v_mark IS NOT NULL AND v_now < v_mark + v_longest THEN
        v_now := v_mark + v_longest;
    END IF;
    IF p_record AND v_oldest <= v_now - v_longest THEN
        SELECT base, earliest INTO v_base, v_oldest FROM {trim}(p_bucket, v_now - v_longest);
        SELECT cum, ts INTO v_total, v_last FROM {table} WHERE bucket = p_bucket AND ts IS NOT NULL
            ORDER BY ts DESC, cum DESC LIMIT 1;
    END IF;
    v_total := coalesce(v_total, v_base);
    v_at := v_now;
    decided := v_now;
    FOR i IN 1 .. cardinality(p_limits) LOOP
        v_need := v_total + p_weight - p_limits[i];
        CONTINUE WHEN v_need <= v_base;
        IF p_weight > p_limits[i] THEN
            delay := -1;
            rate := i - 1;
            RETURN ARRAY[delay, rate, decided];
        END IF;
        SELECT ts + p_intervals[i] INTO v_fits FROM {table}
            WHERE bucket = p_bucket AND cum >= v_need ORDER BY cum, weight DESC LIMIT 1;
        IF v_fits > v_at THEN
            v_at := v_fits;
            rate := i - 1;
        END IF;
    END LOOP;
    IF rate IS NULL THEN
        delay := 0;  -- admitted at once (at v_now, when late: the item is restamped with it)
    ELSE
        -- A decision's delay counts from the time it was decided at; waiting's from the stamp.
        delay := v_at - CASE WHEN p_record THEN v_now ELSE p_t END;
        IF NOT p_record OR p_max_delay IS NULL OR delay > p_max_delay THEN
            RETURN ARRAY[delay, rate, decided];
        END IF;
        rate := NULL;
    END IF;
    IF NOT p_record THEN
        RETURN ARRAY[delay, rate, decided];
    END IF;
    IF v_last IS NULL OR v_at >= v_last THEN
        INSERT INTO {table} (bucket, name, ts, weight, cum)
            VALUES (p_bucket, p_name, v_at, p_weight, v_total + p_weight);
    ELSE
        -- Older than the newest row (clock skew, or behind a reservation): insert in order.
        SELECT cum INTO v_prev FROM {table} WHERE bucket = p_bucket AND ts <= v_at
            ORDER BY ts DESC, cum DESC LIMIT 1;
        IF NOT FOUND THEN
            v_prev := v_base;
        END IF;
        IF p_weight <> 0 THEN
            UPDATE {table} SET cum = cum + p_weight WHERE bucket = p_bucket AND ts > v_at;
        END IF;
        INSERT INTO {table} (bucket, name, ts, weight, cum)
            VALUES (p_bucket, p_name, v_at, p_weight, v_prev + p_weight);
    END IF;
    -- The marker knows the oldest item, so that no decision looks for it (a release may leave it
    -- earlier than the oldest: the next trim is then due early, finds nothing, and corrects it).
    IF v_oldest IS NULL OR v_at < v_oldest THEN
        IF v_marked THEN
            UPDATE {table} SET oldest = v_at WHERE bucket = p_bucket AND ts IS NULL;
        ELSE
            INSERT INTO {table} (bucket, cum, oldest) VALUES (p_bucket, 0, v_at);
        END IF;
    END IF;
    RETURN ARRAY[delay, rate, decided];
END
"""

_DECIDE_CALL = (
    "SELECT {function}({lock}, %s::text, %s::text, %s::bigint, %s::bigint, %s::bigint, {limits}, {intervals},"
    " %s::boolean, %s::bigint)"
)

_TOTAL = "(SELECT cum FROM {table} WHERE bucket = %(bucket)s ORDER BY cum DESC LIMIT 1)"
_BASE = "coalesce((SELECT cum FROM {table} WHERE bucket = %(bucket)s AND ts IS NULL), 0)"

_COUNT = f"SELECT coalesce({_TOTAL}, 0) - {_BASE}"

# The unit ``index`` places from the newest lies in the first row whose running total reaches it,
# unless it is at or below the base: then it was trimmed (or never existed).
_PEEK = (
    f"SELECT name, ts FROM {{table}}, (SELECT {_TOTAL} - %(index)s::bigint AS unit, {_BASE} AS base) u"
    " WHERE bucket = %(bucket)s AND u.unit > u.base AND cum >= u.unit ORDER BY cum, weight DESC LIMIT 1"
)

_LEAK = "SELECT trimmed FROM {trim}(%s::text, %s::bigint)"

_FLUSH = "DELETE FROM {table} WHERE bucket = %s"

# Rows after a row of weight have a running total at least its own; rows before, less.
_RELEASE = (
    "WITH gone AS (DELETE FROM {table} WHERE ctid = (SELECT ctid FROM {table} WHERE bucket = %(bucket)s"
    " AND ts = %(ts)s AND weight = %(weight)s AND name = %(name)s ORDER BY cum DESC LIMIT 1) RETURNING cum, ctid) "
    "UPDATE {table} SET cum = cum - %(weight)s WHERE bucket = %(bucket)s AND %(weight)s::bigint <> 0"
    " AND cum >= (SELECT cum FROM gone) AND ctid <> (SELECT ctid FROM gone)"
)
