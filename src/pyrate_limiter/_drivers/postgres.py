"""PostgreSQL drivers: statements run on psycopg_pool's async pool (awaited) or its sync one (blocking), side by side.

The async bucket takes its driver from ``async_driver``, the sync one from ``driver``: the one
name becomes the other in the generated code. What they run on a table is in ``postgres_table.py``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from .._concurrency import arun_blocking
from .._errors import BackendError, reason

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from psycopg_pool import AsyncConnectionPool, ConnectionPool

    from .._typing import AsyncPostgresPool, PostgresPool

    Params = Sequence[Any] | Mapping[str, Any] | None
    Steps = Sequence[tuple[bytes, Params]]


class Prepared(NamedTuple):
    """A statement prepared once on each connection, under its name."""

    name: bytes
    text: bytes


class AsyncDriver(Protocol):
    """What the async bucket (or clock) runs its statements on; ``BlockingDriver`` is the sync twin.

    Each call is one transaction, and raises ``BackendError`` when the server or the connection
    failed (``recorded``: see ``_failed``), or in a process forked after the driver was made.
    """

    async def run(self, steps: Steps, setup: Steps | None = None) -> tuple[Any, ...] | None:
        """Run ``steps`` in one transaction and return the last one's first row.

        psycopg cursors' statements, a single one in autocommit so that it is one round trip (no
        BEGIN/COMMIT), restoring the connection's own setting before it goes back.

        :param setup: statements creating what is missing, run once when a step finds no table
            or function, before the steps run again.
        """

    async def call(self, statement: Prepared, params: list[str], setup: Steps) -> bytes:
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
        """


def async_driver(pool: AsyncPostgresPool, owner: str) -> AsyncDriver:
    """The driver of the async bucket (or clock) ``owner`` over ``pool``.

    An async pool is awaited natively; a sync one runs each call in a worker thread (the only
    way under trio).
    """
    async_pool, sync_pool = _pools(owner)
    if isinstance(pool, async_pool):
        return NativeDriver(pool, owner)
    if isinstance(pool, sync_pool):
        return ThreadedDriver(pool, owner)
    raise TypeError(f"pool must be a psycopg_pool connection pool for {owner}, got {pool!r}")


def driver(pool: PostgresPool, owner: str) -> BlockingDriver:
    """The driver of the sync bucket (or clock) ``owner`` over ``pool``, run in the calling thread."""
    _, sync_pool = _pools(owner)
    if isinstance(pool, sync_pool):
        return BlockingDriver(pool, owner)
    raise TypeError(f"pool must be a psycopg_pool connection pool for {owner}, got {pool!r}")


# -- the twins: every psycopg error leaves as BackendError, cancellation as itself


class NativeDriver:
    """An async pool, awaited on the event loop."""

    def __init__(self, pool: AsyncConnectionPool[Any], owner: str) -> None:
        self._pool = pool
        self._psycopg = _Psycopg(owner)

    async def run(self, steps: Steps, setup: Steps | None = None) -> tuple[Any, ...] | None:
        psycopg = self._psycopg
        psycopg.check_process()
        try:
            try:
                return await self._run(steps)
            except psycopg.missing:
                if setup is None:
                    raise
            await self._run(setup)
            return await self._run(steps)
        except psycopg.error as error:
            raise psycopg.failed(error) from error

    async def call(self, statement: Prepared, params: list[str], setup: Steps) -> bytes:
        psycopg = self._psycopg
        psycopg.check_process()
        try:
            try:
                return await self._call(statement, params)
            except psycopg.missing:  # refused before it ran: sent again once the function exists
                pass
            await self._run(setup)
            return await self._call(statement, params)
        except psycopg.error as error:
            raise psycopg.failed(error) from error

    async def _run(self, steps: Steps) -> tuple[Any, ...] | None:
        # getconn/putconn rather than connection(), whose exit also calls commit(): a no-op here, not free.
        conn = await self._pool.getconn()
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
            await self._pool.putconn(conn)

    async def _call(self, statement: Prepared, texts: list[str]) -> bytes:
        psycopg = self._psycopg
        conn = await self._pool.getconn()
        try:
            pgconn = conn.pgconn
            encoding = conn.info.encoding
            params = [text.encode(encoding) for text in texts]
            if conn.prepare_threshold is None:  # prepared statements off (PgBouncer): parsed each time
                pgconn.send_query_params(statement.text, params)
                return psycopg.value(await conn.wait(psycopg.execute(pgconn)), conn)
            prepared = _prepared(conn)
            for attempt in (1, 2):
                if statement.name not in prepared:
                    pgconn.send_prepare(statement.name, statement.text)
                    psycopg.value(await conn.wait(psycopg.execute(pgconn)), conn, rows=False)
                    prepared.add(statement.name)
                pgconn.send_query_prepared(statement.name, params)
                try:
                    return psycopg.value(await conn.wait(psycopg.execute(pgconn)), conn)
                except psycopg.forgotten:  # DEALLOCATE or DISCARD ALL ran on this connection
                    prepared.discard(statement.name)
                    if attempt == 2:
                        raise
            raise AssertionError("unreachable")
        finally:
            await self._pool.putconn(conn)


class BlockingDriver:
    """A sync pool, used in the calling thread: the sync bucket's driver."""

    def __init__(self, pool: ConnectionPool[Any], owner: str) -> None:
        self._pool = pool
        self._psycopg = _Psycopg(owner)

    def run(self, steps: Steps, setup: Steps | None = None) -> tuple[Any, ...] | None:
        """The call of ``AsyncDriver.run``, in the calling thread."""
        psycopg = self._psycopg
        psycopg.check_process()
        try:
            try:
                return self._run(steps)
            except psycopg.missing:
                if setup is None:
                    raise
            self._run(setup)
            return self._run(steps)
        except psycopg.error as error:
            raise psycopg.failed(error) from error

    def call(self, statement: Prepared, params: list[str], setup: Steps) -> bytes:
        """The call of ``AsyncDriver.call``, in the calling thread."""
        psycopg = self._psycopg
        psycopg.check_process()
        try:
            try:
                return self._call(statement, params)
            except psycopg.missing:
                pass
            self._run(setup)
            return self._call(statement, params)
        except psycopg.error as error:
            raise psycopg.failed(error) from error

    def _run(self, steps: Steps) -> tuple[Any, ...] | None:
        conn = self._pool.getconn()
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
            self._pool.putconn(conn)

    def _call(self, statement: Prepared, texts: list[str]) -> bytes:
        psycopg = self._psycopg
        conn = self._pool.getconn()
        try:
            pgconn = conn.pgconn
            encoding = conn.info.encoding
            params = [text.encode(encoding) for text in texts]
            if conn.prepare_threshold is None:
                pgconn.send_query_params(statement.text, params)
                return psycopg.value(conn.wait(psycopg.execute(pgconn)), conn)
            prepared = _prepared(conn)
            for attempt in (1, 2):
                if statement.name not in prepared:
                    pgconn.send_prepare(statement.name, statement.text)
                    psycopg.value(conn.wait(psycopg.execute(pgconn)), conn, rows=False)
                    prepared.add(statement.name)
                pgconn.send_query_prepared(statement.name, params)
                try:
                    return psycopg.value(conn.wait(psycopg.execute(pgconn)), conn)
                except psycopg.forgotten:
                    prepared.discard(statement.name)
                    if attempt == 2:
                        raise
            raise AssertionError("unreachable")
        finally:
            self._pool.putconn(conn)


class ThreadedDriver:
    """A sync pool for the async bucket: each call runs in a worker thread."""

    def __init__(self, pool: ConnectionPool[Any], owner: str) -> None:
        blocking = BlockingDriver(pool, owner)
        self._run, self._call = blocking.run, blocking.call

    async def run(self, steps: Steps, setup: Steps | None = None) -> tuple[Any, ...] | None:
        return await arun_blocking(self._run, steps, setup)

    async def call(self, statement: Prepared, params: list[str], setup: Steps) -> bytes:
        return await arun_blocking(self._call, statement, params, setup)


# -- helpers -------------------------------------------------------------------------------------


def _pools(owner: str) -> tuple[type[AsyncConnectionPool[Any]], type[ConnectionPool[Any]]]:
    """psycopg_pool's two pool classes, or an ImportError that says what ``owner`` needs."""
    try:
        import psycopg  # noqa: F401
        from psycopg_pool import AsyncConnectionPool, ConnectionPool
    except ImportError as error:
        raise ImportError(f"{owner} needs psycopg and psycopg_pool: pip install 'psycopg[pool]'") from error
    return AsyncConnectionPool, ConnectionPool


class _Psycopg:
    """What both twins take from psycopg: its errors, its libpq wait, and how a failure reads."""

    def __init__(self, owner: str) -> None:
        import psycopg
        import psycopg_pool
        from psycopg import generators

        self.owner = owner
        self.process = _PROCESS[0]
        self.error = psycopg.Error
        self.unsent = psycopg_pool.PoolTimeout, psycopg_pool.PoolClosed, psycopg_pool.TooManyRequests
        # UndefinedColumn: a table made before a column was added (``paused``), read before a decision.
        errors = psycopg.errors
        self.missing = (errors.UndefinedTable, errors.UndefinedFunction, errors.UndefinedColumn)
        self.forgotten = errors.InvalidSqlStatementName
        self.execute = generators.execute  # what Cursor.execute waits on: flush, then read every result
        self._failure = errors.error_from_result
        self._tuples, self._done = psycopg.pq.ExecStatus.TUPLES_OK, psycopg.pq.ExecStatus.COMMAND_OK

    def check_process(self) -> None:
        """Raise in a child forked after the driver was made: its pool's connections are the parent's."""
        if self.process != _PROCESS[0]:
            raise BackendError(
                f"{self.owner} was made in process {self.process}, before a fork: its pool's connections are"
                " that process's, and this one must open its own pool and bucket",
                recorded=False,
            )

    def failed(self, error: Exception) -> BackendError:
        """``error`` as a ``BackendError``, and whether the statement may have committed.

        An ``ERROR`` the server answers with rolls the statement's transaction back, and a pool
        that lent no connection sent nothing: certainly not recorded. A lost connection, or a
        ``FATAL`` (which may come after the commit), leaves it unknown (``None``).
        """
        severity = getattr(getattr(error, "diag", None), "severity_nonlocalized", None)
        recorded = False if severity == "ERROR" or isinstance(error, self.unsent) else None
        return BackendError(f"the PostgreSQL backend of {self.owner} failed: {reason(error)}", recorded=recorded)

    def value(self, results: list[Any], conn: Any, *, rows: bool = True) -> bytes:
        """The first value of a statement's one result (``rows``) or nothing; a failure raised as psycopg would."""
        expected = self._tuples if rows else self._done
        for result in results:  # one, or more when the server fails the connection as it answers
            if result.status != expected:
                raise self._failure(result, encoding=conn.info.encoding)
        if len(results) != 1:
            raise self._failure(results[-1], encoding=conn.info.encoding)
        return results[0].get_value(0, 0) if rows else b""


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


# This process's id, updated in a forked child: a pool made before the fork is never used after it
# (one comparison per call, not a getpid system call).
_PROCESS = [os.getpid()]
if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=lambda: _PROCESS.__setitem__(0, os.getpid()))

_CURSOR = "_pyrate_limiter_cursor"  # where a connection keeps the cursor of _cursor

_PREPARED = "_pyrate_limiter_prepared"  # where a connection keeps the names of the statements it prepared
