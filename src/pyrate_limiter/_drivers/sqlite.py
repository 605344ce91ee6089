"""SQLite drivers: one transaction of steps on aiosqlite (awaited) or on sqlite3 (blocking), side by side.

The async bucket takes its driver from ``async_driver``, the sync one from ``driver``: the one
name becomes the other in the generated code. The SQL is in ``sqlite.sql``. A driver over a file
checks now and then that the file's path still leads to it (``FileWatch``, in ``sqlite_file``).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import weakref
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Protocol

from .._concurrency import AsyncLock, Lock, arun_blocking, ashielded
from .._errors import BackendError, reason
from . import statements
from .sqlite_file import FORKED, OPENING, FileWatch, Forks

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

    file: FileWatch
    """The file the connection has open, once known: checked every ``CHECK_EVERY`` runs."""

    async def run(self, steps: Steps, *, write: bool, check: bool = False, busy_ms: int | None = None) -> Any:
        """Run ``steps``, in one ``BEGIN IMMEDIATE`` transaction if ``write``, and return their result.

        :param check: check the file now, not only every ``CHECK_EVERY`` runs.
        :param busy_ms: wait at most this long for another connection's lock, if shorter than
            the connection's busy timeout (see ``Busy``).
        :raises BackendError: SQLite failed (read-only or corrupt file, disk full, busy for longer
            than the busy timeout or ``busy_ms``), or the file was deleted or replaced (from then
            on, every run raises); the transaction was rolled back, nothing was recorded.
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


class Busy:
    """What the drivers of one connection share: the lock that keeps its steps from interleaving,
    and its busy timeout, how long a ``BEGIN IMMEDIATE`` waits for another connection's lock.

    A run allowed to wait less (a decision's ``max_delay``) lowers it to that, and the first run
    that is not sets it back. It is set only when it changes: a limiter of one ``max_delay``
    pays for it once, not at every decision (a PRAGMA costs a tenth of one). Between runs the
    connection keeps the one set last.
    """

    __slots__ = ("__weakref__", "lock", "own", "set")

    def __init__(self, lock: Any) -> None:
        self.lock = lock
        self.own: int | None = None  # the connection's own, read at the first bounded run
        self.set: int | None = None  # the one set now (None: the connection's own, or unknown)

    def wanted(self, bound: int | None) -> int | None:
        """The timeout a run of ``bound`` needs set, or ``None`` if it is set already; ``own`` is known."""
        assert self.own is not None
        wanted = self.own if bound is None else min(bound, self.own)
        return None if wanted == (self.own if self.set is None else self.set) else wanted

    def lowered(self) -> int | None:
        """The bound in force, if lower than the connection's own timeout."""
        return self.set if self.set is not None and self.own is not None and 0 <= self.set < self.own else None


# -- the twins: steps of one connection never interleave (a transaction belongs to the
# -- connection, not to the bucket), so every driver on it shares one Busy (and its lock)


class NativeDriver:
    """An aiosqlite connection, awaited on the event loop."""

    def __init__(self, conn: aiosqlite.Connection, owner: str) -> None:
        self._conn = conn
        self._owner = owner
        self._busy = _shared(_TASK_LOCKS, conn, AsyncLock)
        self._lock = self._busy.lock
        self.file = FileWatch(owner)

    async def run(self, steps: Steps, *, write: bool, check: bool = False, busy_ms: int | None = None) -> Any:
        conn, busy = self._conn, self._busy
        try:
            async with self._lock:
                if write:
                    if busy_ms is not None or busy.set is not None:
                        await self._bound_busy(busy_ms)
                    await conn.execute(SQL["begin"])
                try:
                    # Inside the transaction: the file is checked while this run holds its lock.
                    if self.file.due(check):
                        self.file.check()
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
            raise _failed(self._owner, error, self.file, busy) from error

    async def _bound_busy(self, bound: int | None) -> None:
        busy = self._busy
        if busy.own is None:
            cursor = await self._conn.execute(SQL["busy_timeout"])
            busy.own = int(next(iter(await cursor.fetchall()))[0])
        wanted = busy.wanted(bound)
        if wanted is not None:
            busy.set = -1  # unknown until it is done: a run cancelled here leaves the next to set it
            await self._conn.execute(SQL["set_busy_timeout"].format(ms=wanted))
            busy.set = None if wanted == busy.own else wanted

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
        self._busy = _shared(_THREAD_LOCKS, id(conn), Lock)
        self._lock = self._busy.lock
        self.file = FileWatch(owner)

    def run(self, steps: Steps, write: bool, check: bool = False, busy_ms: int | None = None) -> Any:
        """The transaction of ``AsyncDriver.run``, in the calling thread."""
        conn, busy = self._conn, self._busy
        try:
            with self._lock:
                if write:
                    if busy_ms is not None or busy.set is not None:
                        self._bound_busy(busy_ms)
                    conn.execute(SQL["begin"])
                try:
                    if self.file.due(check):  # inside the transaction, as in NativeDriver
                        self.file.check()
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
            raise _failed(self._owner, error, self.file, busy) from error

    def _bound_busy(self, bound: int | None) -> None:
        """``NativeDriver._bound_busy``, in the calling thread."""
        busy = self._busy
        if busy.own is None:
            busy.own = int(self._conn.execute(SQL["busy_timeout"]).fetchall()[0][0])
        wanted = busy.wanted(bound)
        if wanted is not None:
            busy.set = -1
            self._conn.execute(SQL["set_busy_timeout"].format(ms=wanted))
            busy.set = None if wanted == busy.own else wanted

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class ThreadedDriver:
    """A sqlite3 connection for the async bucket: each transaction is one worker thread call."""

    def __init__(self, conn: sqlite3.Connection, owner: str) -> None:
        self._blocking = BlockingDriver(conn, owner)
        self.file = self._blocking.file  # checked in the worker thread, by the blocking twin

    async def run(self, steps: Steps, *, write: bool, check: bool = False, busy_ms: int | None = None) -> Any:
        return await arun_blocking(self._blocking.run, steps, write, check, busy_ms)

    async def aclose(self) -> None:
        await arun_blocking(self._blocking.close)


# -- the statements of one table ---------------------------------------------------------------

SQL = statements("sqlite.sql")

PAUSES = "pyrate_limiter_pauses"
"""The table of every bucket's pause in a file (named in ``sqlite.sql``): no bucket table may take its name."""


@dataclass(frozen=True)
class TableSQL:
    """The text of each statement of ``sqlite.sql`` on one table, fixed for the bucket's life."""

    create_table: str
    create_pauses: str
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
    pause: str
    paused: str
    unpause: str
    usage: str  # state with counted_since per rate: Limiter.state's one statement
    befores: str  # before_at per rate: what a refusal reads to say what each rate has left

    @classmethod
    def of(cls, table: str, limits: Iterable[int]) -> TableSQL:
        """The statements on ``table`` (any text: it is quoted) for rates of ``limits``.

        ``usage`` takes the weight, then ``t - span`` of each rate; ``befores`` ``t - span`` of each.
        """
        quoted, limits = '"' + table.replace('"', '""') + '"', list(limits)
        bucket = "'" + table.replace("'", "''") + "'"  # the key of its pause
        firsts = ", ".join(SQL["first_reaching"].format(table=quoted, limit=int(limit)) for limit in limits)
        counted = "".join(
            ", " + SQL["counted_since"].format(table=quoted, since=f"?{k + 2}") for k in range(len(limits))
        )
        # Each text is formatted once, with finished pieces as values: a brace in the table's
        # name is then only text.
        made = {
            field.name: SQL[field.name].format(table=quoted, bucket=bucket, firsts=firsts, counted="")
            for field in fields(cls)
            if field.name not in ("usage", "befores")
        }
        made["usage"] = SQL["state"].format(table=quoted, bucket=bucket, firsts=firsts, counted=counted)
        befores = ", ".join(SQL["before_at"].format(table=quoted, since=f"?{k + 1}") for k in range(len(limits)))
        made["befores"] = SQL["befores"].format(befores=befores)
        return cls(**made)


# -- helpers -------------------------------------------------------------------------------------


def _failed(owner: str, error: sqlite3.Error, file: FileWatch, busy: Busy) -> BackendError:
    # Any failure may come from a file deleted or replaced under the connection: then say so.
    # Otherwise the transaction was rolled back, or never began: nothing was recorded.
    failed = f"the SQLite backend of {owner} failed: {reason(error)}"
    bound = busy.lowered()
    if bound is not None and isinstance(error, sqlite3.OperationalError) and "locked" in str(error):
        failed = (
            f"the SQLite database of {owner} was locked by another connection for longer than the "
            f"{bound} ms this decision may wait (its max_delay), so it was not decided: {reason(error)}"
        )
    return file.moved() or BackendError(failed, recorded=False)


# A sqlite3 connection cannot be weakly referenced: its Busy is kept by id, for as long as a
# driver holds it. Each driver holds its connection too, so no other connection can have that
# id meanwhile; once they are gone, a new connection given the id (CPython reuses addresses at
# once) gets a new Busy, not the old one's timeouts. An async connection's Busy (its lock
# belongs to one event loop) goes with the connection.
_REGISTRY_LOCK = threading.Lock()
_THREAD_LOCKS: weakref.WeakValueDictionary[int, Busy] = weakref.WeakValueDictionary()
_TASK_LOCKS: weakref.WeakKeyDictionary[Any, Busy] = weakref.WeakKeyDictionary()


def _shared(registry: MutableMapping[Any, Busy], key: object, make: Callable[[], Any]) -> Busy:
    with _REGISTRY_LOCK:
        shared = registry.get(key)
        if shared is None:
            shared = registry[key] = Busy(make())
        return shared


# fork() copies a lock held by another thread as held forever, and SQLite's own mutexes and
# lock bookkeeping with it, taken mid-transaction: the child would hang on its first decision,
# or see its own file locked forever. So every connection's lock is taken just before a fork,
# and the one around opening a connection: no thread of ours is inside SQLite as it is copied.
# They are released after it, in the parent and in the child alike. A fork thus waits for the
# transactions under way: each is short, unless it waits for another process's lock (at most
# its busy timeout). The async drivers' locks belong to an event loop that no child inherits.
_FORKING: list[Any] = []


def _hold_every_lock() -> None:
    FORKED.acquire()
    OPENING.acquire()
    _REGISTRY_LOCK.acquire()  # first: no new connection meanwhile; none is taken under a connection's lock
    _FORKING[:] = [busy.lock for busy in list(_THREAD_LOCKS.values())]
    for lock in _FORKING:
        lock.acquire()


def _release_every_lock() -> None:
    for lock in _FORKING:
        lock.release()
    _FORKING.clear()
    _REGISTRY_LOCK.release()
    OPENING.release()
    FORKED.release()


def _in_child() -> None:
    Forks.count += 1
    _release_every_lock()


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(before=_hold_every_lock, after_in_parent=_release_every_lock, after_in_child=_in_child)
