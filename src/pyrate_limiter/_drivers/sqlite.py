"""SQLite drivers: one transaction of steps on aiosqlite (awaited) or on sqlite3 (blocking), side by side.

The async bucket takes its driver from ``async_driver``, the sync one from ``driver``: the one
name becomes the other in the generated code. The SQL is in ``sqlite.sql``.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import weakref
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Protocol

from .._concurrency import AsyncLock, Lock, arun_blocking, ashielded
from .._errors import BackendError, reason
from . import statements

if TYPE_CHECKING:
    from collections.abc import Callable, Generator, Iterable, MutableMapping, Sequence

    import aiosqlite

    from .._typing import AsyncSQLiteConnection

    Query = tuple[str, Sequence[Any]]
    Rows = list[Any]
    Steps = Generator[Query, Rows, Any]
    """A transaction: each step yields a statement and its parameters and receives its rows."""


class AsyncDriver(Protocol):
    """What the async bucket runs its transactions on; ``BlockingDriver`` is the sync twin."""

    async def run(self, steps: Steps, *, write: bool) -> Any:
        """Run ``steps``, in one ``BEGIN IMMEDIATE`` transaction if ``write``, and return their result.

        :raises BackendError: SQLite failed (read-only or corrupt file, disk full, busy for longer
            than the busy timeout); the transaction was rolled back, nothing was recorded.
        """

    async def aclose(self) -> None:
        """Close the connection."""


def async_driver(conn: AsyncSQLiteConnection, owner: str) -> AsyncDriver:
    """The driver of the async bucket (or clock) ``owner`` over ``conn``.

    An aiosqlite connection is awaited natively; a sqlite3 one runs each transaction in one
    worker thread call (the only way under trio).
    """
    if isinstance(conn, sqlite3.Connection):
        return ThreadedDriver(conn, owner)
    if is_aiosqlite(conn):
        return NativeDriver(conn, owner)
    raise TypeError(f"conn must be an SQLite connection for {owner}, got {conn!r}")


def driver(conn: sqlite3.Connection, owner: str) -> BlockingDriver:
    """The driver of the sync bucket (or clock) ``owner`` over ``conn``, run in the calling thread."""
    if isinstance(conn, sqlite3.Connection):
        return BlockingDriver(conn, owner)
    if is_aiosqlite(conn):
        raise TypeError(
            f"conn must be a sqlite3 connection for {owner}, got an aiosqlite one: it needs the "
            f"async twin (AsyncSQLiteBucket, AsyncSQLiteClock), or give {owner} a sqlite3 connection"
        )
    raise TypeError(f"conn must be an SQLite connection for {owner}, got {conn!r}")


def is_aiosqlite(conn: object) -> bool:
    """Whether ``conn`` looks like an aiosqlite connection (checked by shape: the extra is optional)."""
    return hasattr(conn, "execute") and hasattr(conn, "in_transaction") and hasattr(conn, "__aenter__")


def open_file(path: str, timeout: float = 5.0) -> sqlite3.Connection:
    """A sqlite3 connection to ``path`` for a bucket or clock that closes it, waiting ``timeout`` s for locks.

    :raises BackendError: the file cannot be opened.
    """
    # check_same_thread=False: the sync twin leaks from a background thread, the async one runs
    # in worker threads; the driver's lock keeps its transactions apart. isolation_level=None:
    # transactions are ours (BEGIN IMMEDIATE), never the driver's implicit deferred ones.
    try:
        return sqlite3.connect(path, timeout=timeout, check_same_thread=False, isolation_level=None)
    except sqlite3.Error as error:
        raise BackendError(f"the SQLite backend could not open {path!r}: {reason(error)}", recorded=False) from error


# -- the twins: steps of one connection never interleave (a transaction belongs to the
# -- connection, not to the bucket), so every driver on it shares one lock


class NativeDriver:
    """An aiosqlite connection, awaited on the event loop."""

    def __init__(self, conn: aiosqlite.Connection, owner: str) -> None:
        self._conn = conn
        self._owner = owner
        self._lock: Any = _shared(_TASK_LOCKS, conn, AsyncLock)

    async def run(self, steps: Steps, *, write: bool) -> Any:
        conn = self._conn
        try:
            async with self._lock:
                if write:
                    await conn.execute(SQL["begin"])
                try:
                    query = next(steps)
                    while True:
                        cursor = await conn.execute(*query)
                        rows = await cursor.fetchall() if cursor.description else []
                        query = steps.send(list(rows))
                except StopIteration as done:
                    if write:
                        await conn.execute(SQL["commit"])
                    return done.value
                except BaseException:
                    if write:
                        await ashielded(self._rollback)
                    raise
        except sqlite3.Error as error:
            raise _failed(self._owner, error) from error

    async def _rollback(self) -> None:
        # Unconditional: a cancelled call may still be queued on the driver's thread (even the
        # BEGIN itself), and this ROLLBACK runs after it.
        with contextlib.suppress(sqlite3.OperationalError):  # no transaction was open
            await self._conn.execute(SQL["rollback"])

    async def aclose(self) -> None:
        await self._conn.close()


class BlockingDriver:
    """A sqlite3 connection, used in the calling thread: the sync bucket's driver."""

    def __init__(self, conn: sqlite3.Connection, owner: str) -> None:
        self._conn = conn
        self._owner = owner
        self._lock: Any = _shared(_THREAD_LOCKS, id(conn), Lock)

    def run(self, steps: Steps, write: bool) -> Any:
        """The transaction of ``AsyncDriver.run``, in the calling thread."""
        conn = self._conn
        try:
            with self._lock:
                if write:
                    conn.execute(SQL["begin"])
                try:
                    query = next(steps)
                    while True:
                        cursor = conn.execute(*query)
                        rows = cursor.fetchall() if cursor.description else []
                        query = steps.send(rows)
                except StopIteration as done:
                    if write:
                        conn.execute(SQL["commit"])
                    return done.value
                except BaseException:
                    if conn.in_transaction:
                        conn.execute(SQL["rollback"])
                    raise
        except sqlite3.Error as error:
            raise _failed(self._owner, error) from error

    def close(self) -> None:
        with self._lock:
            self._conn.close()
            with _REGISTRY_LOCK:
                _THREAD_LOCKS.pop(id(self._conn), None)


class ThreadedDriver:
    """A sqlite3 connection for the async bucket: each transaction is one worker thread call."""

    def __init__(self, conn: sqlite3.Connection, owner: str) -> None:
        self._blocking = BlockingDriver(conn, owner)

    async def run(self, steps: Steps, *, write: bool) -> Any:
        return await arun_blocking(self._blocking.run, steps, write)

    async def aclose(self) -> None:
        await arun_blocking(self._blocking.close)


# -- the statements of one table ---------------------------------------------------------------

SQL = statements("sqlite.sql")


@dataclass(frozen=True)
class TableSQL:
    """The text of each statement of ``sqlite.sql`` on one table, fixed for the bucket's life."""

    create_table: str
    probe: str
    state: str
    trim: str
    mark: str
    trimmed: str
    insert: str
    before: str
    shift: str
    unshift: str
    find: str
    delete: str
    flush: str
    count: str
    peek: str
    usage: str  # state with counted_since per rate: Limiter.state's one statement

    @classmethod
    def of(cls, table: str, limits: Iterable[int]) -> TableSQL:
        """The statements on ``table`` (any text: it is quoted) for rates of ``limits``.

        ``usage`` takes the weight, then ``t - span`` of each rate.
        """
        quoted, limits = '"' + table.replace('"', '""') + '"', list(limits)
        firsts = ", ".join(SQL["first_reaching"].format(table=quoted, limit=int(limit)) for limit in limits)
        counted = "".join(
            ", " + SQL["counted_since"].format(table=quoted, since=f"?{k + 2}") for k in range(len(limits))
        )
        made = {field.name: SQL[field.name] for field in fields(cls) if field.name != "usage"}
        made["usage"] = SQL["state"].replace("{counted}", counted)
        return cls(**{name: text.format(table=quoted, firsts=firsts, counted="") for name, text in made.items()})


# -- helpers -------------------------------------------------------------------------------------


def _failed(owner: str, error: sqlite3.Error) -> BackendError:
    # The transaction was rolled back, or never began: nothing was recorded.
    return BackendError(f"the SQLite backend of {owner} failed: {reason(error)}", recorded=False)


# A sqlite3 connection cannot be weakly referenced: its lock is kept by id (a thread lock, fit
# for any later connection given that id) and dropped when we close it. An async connection's
# lock belongs to one event loop: it goes with the connection.
_REGISTRY_LOCK = threading.Lock()
_THREAD_LOCKS: dict[Any, Any] = {}
_TASK_LOCKS: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def _shared(registry: MutableMapping[Any, Any], key: object, make: Callable[[], Any]) -> Any:
    with _REGISTRY_LOCK:
        lock = registry.get(key)
        if lock is None:
            lock = registry[key] = make()
        return lock
