"""PostgreSQL buckets shared by processes and machines: each decision is one call of a per-table
PL/pgSQL function that holds a per-bucket advisory lock, and a clock reading the server's time."""

from __future__ import annotations

import functools
import hashlib
import os
from typing import TYPE_CHECKING, Any

from ... import _postgres_sql as q
from ..._batching import AsyncBatcher
from ..._concurrency import arun_blocking
from ..._errors import BackendError, reason
from ..._rate import RateItem, check_name, check_pause, check_rates
from ..._window import NEVER, UNSTORABLE, earliest_fit, judged_at, span, wait
from ..clocks import AsyncAbstractClock
from .base import AsyncReservingBucket

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from psycopg_pool import AsyncConnectionPool, ConnectionPool

    from ..._rate import Rate, Verdict
    from ..._state import Usage

    Params = Sequence[Any] | Mapping[str, Any] | None
    Steps = Sequence[tuple[bytes, Params]]
    Request = tuple[str, int, int, int | None]  # an item's name, stamp and weight, and its max_delay
    # delay, index of the refusing rate, time decided at, and a refusal's units left per rate
    Decision = tuple[int, int | None, int, tuple[int, ...]]

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
    a held lock is waited for, never read as a full bucket. Reservations that tasks of one event
    loop (not threads) make on one bucket object at the same moment share that call: the function
    decides them in the order they were made, each as if it had waited for the lock in turn. The
    table (in the connection's current schema) holds one row per admitted item (``bucket, name,
    ts, weight, cum``: epoch ms and a running total of weight) and a marker row per bucket (no
    name, no ``ts``: what trimming left, and where the oldest item is); it is created, with its
    functions and indexes, on first use.
    A pause (``pause_until``) is an end kept by max in the marker, read by each decision with the
    rest of the bucket's state and never trimmed: it lasts until it ends or ``flush``.
    Decisions and ``leak`` trim the rows that can no longer count, stamped at or before
    ``t - longest interval - 1``; an item stamped before the newest trimmed stamp plus the longest
    interval plus 1 (clock skew between machines) is decided as arriving then, as in every backend.

    :param pool: a ``psycopg_pool.ConnectionPool``; the async bucket also takes an async pool,
        awaited natively (on an event loop that pool cannot run on, give it the sync pool: its
        calls then run in worker threads). Give it ``check=ConnectionPool.check_connection`` to
        replace connections a server restart broke before they fail a call.
    :param table: the table's name, used as a quoted identifier (at most 63 bytes).
    :param key: the bucket's name in that table, so that several buckets share one table.
    :param durable: ``False`` commits each decision with ``synchronous_commit=off`` (for its own
        transaction only): a call returns without waiting for the server to flush its record to
        disk, a wait often longer than the rest of the decision on a server that syncs its disk.
        A server crash (not a lost connection, nor a crash of the client) may then forget the
        items admitted in its last moments, up to three times ``wal_writer_delay`` (0.6 s by
        default): their room is free again, and right after the crash the bucket may admit more
        than its rates allow. ``True``, the default, commits as the server is configured
        (``synchronous_commit=on`` unless changed there): nothing admitted is forgotten.
    A forked child cannot use a bucket made before the fork: its pool's connections and locks are
    the parent's (psycopg_pool does nothing on fork), so each call raises ``BackendError`` with
    ``recorded=False`` without touching the pool. Open a new pool and bucket in the child.
    Nothing is ever sent twice: when a decision's reply is lost (the connection dies as it
    commits), the call raises ``BackendError`` with ``recorded=None``, since the item may count.

    :raises BackendError: from every method, when the server or the connection fails.
    """

    def __init__(
        self,
        pool: AsyncConnectionPool[Any] | ConnectionPool[Any],
        table: str,
        rates: list[Rate],
        *,
        key: str = DEFAULT_KEY,
        durable: bool = True,
    ) -> None:
        self.rates = check_rates(rates)
        self.failing_rate = None
        self.table = _check_name("table", table, empty=False)
        self.key = _check_name("key", key, empty=True)
        if len(table.encode()) > _MAX_IDENTIFIER:
            raise ValueError(f"table must be at most {_MAX_IDENTIFIER} bytes, got {table!r}")
        if not isinstance(durable, bool):
            raise TypeError(f"durable must be a bool, got {durable!r}")
        self.durable = durable
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
            "function": sql.Identifier(q.derived_name(table, q.DECIDE)),
            "trim": sql.Identifier(q.derived_name(table, "trim")),
            "pause": sql.Identifier(q.derived_name(table, "pause")),
            "ts_index": sql.Identifier(q.derived_name(table, "ts")),
            "cum_index": sql.Identifier(q.derived_name(table, "cum")),
        }
        # Statements sent with parameters have their "%" parsed as placeholders, even inside a
        # quoted identifier: there the table's name is escaped; statements without are sent as is.
        table_sql = sql.SQL(sql.Identifier(table).as_string(None).replace("%", "%%"))

        def render(query: str) -> bytes:
            return sql.SQL(query).format(**{**ident, "table": table_sql}).as_bytes(None)

        def function(head: str, body: str) -> bytes:
            literal = sql.Literal(sql.SQL(body).format(**ident).as_string(None))
            return sql.SQL(head).format(body=literal, **ident).as_bytes(None)

        self._setup: Steps = [
            (q.LOCK, [advisory_key(table, "\0setup")]),  # a NUL-free key can never be this one
            *((sql.SQL(query).format(**ident).as_bytes(None), None) for query in q.SETUP),
            (function(q.TRIM_HEAD, q.TRIM_BODY), None),
            (function(q.DECIDE_HEAD, q.DECIDE_BODY), None),
            (function(q.PAUSE_HEAD, q.PAUSE_BODY), None),
        ]
        # One statement per table, prepared once on each connection; the bucket's constants are parameters.
        function_name = q.derived_name(table, q.DECIDE)
        self._decide_sql = q.Prepared(function_name.encode(), q.DECIDE_CALL.format(function=function_name).encode())
        self._constants = (str(self.lock_key), q.integers(self._limits), q.integers(self._spans), str(durable))
        self._count_sql = render(q.COUNT)
        self._state_sql = render(q.STATE)
        self._peek_sql = render(q.PEEK)
        self._leak_sql = render(q.LEAK)
        self._flush_sql = render(q.FLUSH)
        self._release_sql = render(q.RELEASE)
        self._pause_sql = render(q.PAUSE)
        self._paused_sql = render(q.PAUSED)
        # Reservations allowed the same wait for the lock share calls (a call waits for it once).
        self._reserving: dict[int, AsyncBatcher] = {}

    async def reserve(self, item: RateItem, max_delay: int | None) -> Verdict:
        if item.weight > self._unstorable:
            return NEVER, self.rates[0]
        lock_timeout = _lock_timeout(max_delay)
        batcher = self._reserving.get(lock_timeout)
        if batcher is None:
            if len(self._reserving) >= _MAX_BATCHERS:  # callers giving ever new max_delay values
                self._reserving.clear()  # batches in flight keep theirs
            batcher = self._reserving[lock_timeout] = AsyncBatcher(functools.partial(self._decide, lock_timeout, True))
        delay, rate, decided, left = await batcher.submit((_name(item), item.timestamp, item.weight, max_delay))
        item.timestamp = decided  # later than its stamp when a trim overtook it
        return (delay, None) if rate is None else (delay, self.rates[rate], left)

    async def waiting(self, item: RateItem) -> int:
        if item.weight > self._unstorable:
            return NEVER
        request = (_name(item), item.timestamp, item.weight, None)
        ((delay, rate, decided, _),) = await self._decide(LOCK_TIMEOUT, False, [request])
        # Fitting at once is fitting at the time decided at: later than a stamp behind the floor.
        return decided - item.timestamp if rate is None else delay

    async def release(self, item: RateItem) -> None:
        params = {"bucket": self.key, "ts": item.timestamp, "weight": item.weight, "name": _name(item)}
        await self._locked(self._release_sql, params)

    async def state(self, item: RateItem) -> tuple[int, Usage]:
        # One statement reads it all; a weight past storing is asked about as 0, and never fits.
        weight, t = (0 if item.weight > self._unstorable else item.weight), item.timestamp
        params = {"bucket": self.key, "weight": weight, "t": t, "limits": self._limits, "spans": self._spans}
        row = await self._pool.run([(self._state_sql, params)], self._setup)
        assert row is not None
        total, base, trimmed, paused, firsts, befores, oldest = row
        rates = list(zip(self._limits, self._spans, strict=True))
        start = max(judged_at(t, trimmed, self._longest), paused or 0)  # nothing fits before the pause ends
        at, _ = earliest_fit(start, weight, rates, total, base, firsts)
        usage = []
        for rate, stamps, before, first in zip(self.rates, self._spans, befores, oldest, strict=True):
            used = total - (base if before is None else before)
            usage.append((rate, used, first + stamps - t if used else 0))
        return (NEVER if weight != item.weight else wait(t, at)), usage

    async def pause_until(self, name: str, until: int) -> int:
        """Admit nothing under ``name`` before ``until`` (ms on the items' clock) for every caller
        sharing the backend; a later end already set stays. :return: the end now in force."""
        check_pause(name, until)
        # One call: the bucket's pause function keeps the later end in its marker, under its lock.
        params = [self.lock_key, self.key, until, LOCK_TIMEOUT]
        row = await self._pool.run([(self._pause_sql, params)], self._setup)
        assert row is not None
        return int(row[0])

    async def paused_until(self, name: str) -> int:
        """When the pause on ``name`` ends (ms on the items' clock); 0 when none was set (or since flush)."""
        check_name(name)
        row = await self._pool.run([(self._paused_sql, [self.key])], self._setup)
        assert row is not None
        return int(row[0])

    async def leak(self, current_timestamp: int) -> int:
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

    async def _decide(self, lock_timeout: int, record: bool, requests: list[Request]) -> list[Decision]:
        """One call of the bucket's function deciding ``requests`` in order (recording them if ``record``)."""
        lock, limits, spans, durable = self._constants
        names, numbers = q.items(requests)
        params = [lock, self.key, names, numbers, limits, spans, str(record), str(lock_timeout), durable]
        flat: list[Any] = q.parse_integers(await self._pool.call(self._decide_sql, params, self._setup))
        decisions: list[Decision] = []
        i, rates = 0, len(self._limits)
        while i < len(flat):  # delay, rate, decided; a refusal's then followed by a number per rate
            if flat[i + 1] is None:
                decisions.append((flat[i], None, flat[i + 2], ()))
                i += 3
            else:
                decisions.append((flat[i], flat[i + 1], flat[i + 2], tuple(flat[i + 3 : i + 3 + rates])))
                i += 3 + rates
        return decisions

    async def _locked(self, query: bytes, params: Params) -> tuple[Any, ...] | None:
        """Run ``query`` in a transaction holding this bucket's lock (two round trips: not a decision)."""
        return await self._pool.run([(q.LOCK, [self.lock_key]), (query, params)], self._setup)


class AsyncPostgresClock(AsyncAbstractClock):
    """The PostgreSQL server's clock, so that processes on machines with skewed clocks agree.

    Read as epoch milliseconds from ``clock_timestamp()``: a ``timestamptz``, hence free of any
    time-zone setting. Takes the same pools as ``AsyncPostgresBucket``.
    """

    def __init__(self, pool: AsyncConnectionPool[Any] | ConnectionPool[Any]) -> None:
        self._pool = _Pool(pool, "PostgresClock")

    async def now(self) -> int:
        row = await self._pool.run([(q.NOW, None)])
        assert row is not None
        return int(row[0])


def advisory_key(table: str, key: str) -> int:
    """A stable signed 64-bit hash of ``table`` and ``key``: the bucket's advisory lock."""
    digest = hashlib.blake2b(f"{table}\0{key}".encode(), digest_size=8, person=b"pyrate-lock").digest()
    return int.from_bytes(digest, "big", signed=True)


class _Pool:
    """Runs statements on a pool: awaited on an async pool, in a worker thread on a sync one.

    Each call is one transaction: ``run`` sends psycopg cursors' statements, a single one in
    autocommit so that it is one round trip (no BEGIN/COMMIT), restoring the connection's own
    setting before it goes back; ``call`` sends one prepared statement through libpq itself.
    """

    def __init__(self, pool: AsyncConnectionPool[Any] | ConnectionPool[Any], owner: str) -> None:
        try:
            import psycopg
            import psycopg_pool
            from psycopg import generators
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
        self._process = _PROCESS[0]
        self._error = psycopg.Error
        self._unsent = psycopg_pool.PoolTimeout, psycopg_pool.PoolClosed, psycopg_pool.TooManyRequests
        # UndefinedColumn: a table made before a column was added (``paused``), read before a decision.
        errors = psycopg.errors
        self._missing = (errors.UndefinedTable, errors.UndefinedFunction, errors.UndefinedColumn)
        self._forgotten = psycopg.errors.InvalidSqlStatementName
        self._execute = generators.execute  # what Cursor.execute waits on: flush, then read every result
        self._failure = psycopg.errors.error_from_result
        self._tuples, self._done = psycopg.pq.ExecStatus.TUPLES_OK, psycopg.pq.ExecStatus.COMMAND_OK

    async def run(self, steps: Steps, setup: Steps | None = None) -> tuple[Any, ...] | None:
        """Run ``steps`` in one transaction and return the last one's first row.

        :param setup: statements creating what is missing, run once when a step finds no table
            or function, before the steps run again.
        :raises BackendError: the server or the connection failed (``recorded``: see ``_failed``).
        """
        if self._process != _PROCESS[0]:
            raise self._forked()
        try:
            try:
                return await self._run(steps)
            except self._missing:
                if setup is None:
                    raise
            await self._run(setup)
            return await self._run(steps)
        except self._error as error:
            raise self._failed(error) from error

    async def call(self, statement: q.Prepared, params: list[str], setup: Steps) -> bytes:
        """Run ``statement``, prepared on each connection, and return its one value as the server sent it.

        One round trip on the connection's libpq connection (``conn.pgconn``), waited for as
        psycopg waits (``conn.wait``: interruptible, cancelling the query on the server), and its
        failure raised as psycopg's error (``error_from_result``): the server runs a lone
        statement in a transaction of its own whatever psycopg's autocommit setting, and the
        call skips a cursor's Python work, as long as the server's part of a decision. ``params``
        are text, sent in the connection's encoding. Names prepared on a connection are kept
        with it (``_prepared``); a session that forgot one prepares it again, and a connection
        with ``prepare_threshold=None`` (PgBouncer in transaction mode) has the statement parsed
        each time instead.

        :param setup: as in ``run``.
        :raises BackendError: as in ``run``.
        """
        if self._process != _PROCESS[0]:
            raise self._forked()
        try:
            try:
                return await self._call(statement, params)
            except self._missing:  # refused before it ran: sent again once the function exists
                pass
            await self._run(setup)
            return await self._call(statement, params)
        except self._error as error:
            raise self._failed(error) from error

    def _failed(self, error: Exception) -> BackendError:
        """``error`` as a ``BackendError``, and whether the statement may have committed.

        An ``ERROR`` the server answers with rolls the statement's transaction back, and a pool
        that lent no connection sent nothing: certainly not recorded. A lost connection, or a
        ``FATAL`` (which may come after the commit), leaves it unknown (``None``).
        """
        severity = getattr(getattr(error, "diag", None), "severity_nonlocalized", None)
        recorded = False if severity == "ERROR" or isinstance(error, self._unsent) else None
        return BackendError(f"the PostgreSQL backend of {self._owner} failed: {reason(error)}", recorded=recorded)

    def _forked(self) -> BackendError:
        return BackendError(
            f"{self._owner} was made in process {self._process}, before a fork: its pool's connections are"
            " that process's, and this one must open its own pool and bucket",
            recorded=False,
        )

    async def _call(self, statement: q.Prepared, texts: list[str]) -> bytes:
        if self._native is None:
            return await arun_blocking(self._call_blocking, statement, texts)
        conn = await self._native.getconn()
        try:
            pgconn = conn.pgconn
            encoding = conn.info.encoding
            params = [text.encode(encoding) for text in texts]
            if conn.prepare_threshold is None:  # prepared statements off (PgBouncer): parsed each time
                pgconn.send_query_params(statement.text, params)
                return self._value(await conn.wait(self._execute(pgconn)), conn)
            prepared = _prepared(conn)
            for attempt in (1, 2):
                if statement.name not in prepared:
                    pgconn.send_prepare(statement.name, statement.text)
                    self._value(await conn.wait(self._execute(pgconn)), conn, rows=False)
                    prepared.add(statement.name)
                pgconn.send_query_prepared(statement.name, params)
                try:
                    return self._value(await conn.wait(self._execute(pgconn)), conn)
                except self._forgotten:  # DEALLOCATE or DISCARD ALL ran on this connection
                    prepared.discard(statement.name)
                    if attempt == 2:
                        raise
            raise AssertionError("unreachable")
        finally:
            await self._native.putconn(conn)

    def _call_blocking(self, statement: q.Prepared, texts: list[str]) -> bytes:
        assert self._blocking is not None
        conn = self._blocking.getconn()
        try:
            pgconn = conn.pgconn
            encoding = conn.info.encoding
            params = [text.encode(encoding) for text in texts]
            if conn.prepare_threshold is None:
                pgconn.send_query_params(statement.text, params)
                return self._value(conn.wait(self._execute(pgconn)), conn)
            prepared = _prepared(conn)
            for attempt in (1, 2):
                if statement.name not in prepared:
                    pgconn.send_prepare(statement.name, statement.text)
                    self._value(conn.wait(self._execute(pgconn)), conn, rows=False)
                    prepared.add(statement.name)
                pgconn.send_query_prepared(statement.name, params)
                try:
                    return self._value(conn.wait(self._execute(pgconn)), conn)
                except self._forgotten:
                    prepared.discard(statement.name)
                    if attempt == 2:
                        raise
            raise AssertionError("unreachable")
        finally:
            self._blocking.putconn(conn)

    def _value(self, results: list[Any], conn: Any, *, rows: bool = True) -> bytes:
        """The first value of a statement's one result (``rows``) or nothing; a failure raised as psycopg would."""
        expected = self._tuples if rows else self._done
        for result in results:  # one, or more when the server fails the connection as it answers
            if result.status != expected:
                raise self._failure(result, encoding=conn.info.encoding)
        if len(results) != 1:
            raise self._failure(results[-1], encoding=conn.info.encoding)
        return results[0].get_value(0, 0) if rows else b""

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


def _prepared(conn: Any) -> set[bytes]:
    """The names of the statements this module prepared on ``conn``, kept with the connection."""
    kept = vars(conn)
    names: set[bytes] | None = kept.get(_PREPARED)
    if names is None:
        names = kept[_PREPARED] = set()
    return names


def _check_name(what: str, value: str, *, empty: bool) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, got {value!r}")
    if "\0" in value or (not value and not empty):
        raise ValueError(f"{what} must be a non-empty str without NUL characters, got {value!r}")
    return value


def _lock_timeout(max_delay: int | None) -> int:
    """The wait for another connection's hold on the bucket: the caller's ``max_delay`` when given,
    but never below ``LOCK_WAIT_MIN`` (concurrent decisions queue on the lock in normal work)."""
    return LOCK_TIMEOUT if max_delay is None else min(max(LOCK_WAIT_MIN, max_delay), _MAX_LOCK_TIMEOUT)


def _name(item: RateItem) -> str:
    name = str(item.name)
    if "\0" in name:
        raise ValueError(f"item names stored in PostgreSQL cannot hold NUL characters, got {item.name!r}")
    return name


# This process's id, updated in a forked child: a pool made before the fork is never used after it
# (one comparison per call, not a getpid system call).
_PROCESS = [os.getpid()]
if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=lambda: _PROCESS.__setitem__(0, os.getpid()))

_CURSOR = "_pyrate_limiter_cursor"  # where a connection keeps the cursor of _cursor

_MAX_BATCHERS = 16  # distinct lock waits a bucket keeps a batcher for

_PREPARED = "_pyrate_limiter_prepared"  # where a connection keeps the names of the statements it prepared
