"""SQLite buckets: state in a file that the processes of one machine share and that outlives them.

Each decision is one ``BEGIN IMMEDIATE`` transaction, so SQLite's own lock makes it atomic.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import sys
import tempfile
import threading
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..._concurrency import AsyncLock, arun_blocking, ashielded, asleep
from ..._errors import BackendError, reason
from ..._rate import RateItem, check_rates
from ..._window import NEVER, UNSTORABLE, span
from ..clocks import AsyncAbstractClock
from .base import AsyncReservingBucket

if TYPE_CHECKING:
    from collections.abc import Callable, Generator, MutableMapping, Sequence

    from typing_extensions import Self

    from ..._rate import Rate
    from ..._typing import AsyncSQLiteConnection

    Query = tuple[str, Sequence[Any]]
    Rows = list[Any]
    Steps = Generator[Query, Rows, Any]

DEFAULT_TABLE = "rate_bucket"
_SETUP_ATTEMPTS = 20
Synchronous = Literal["OFF", "NORMAL", "FULL", "EXTRA"]


class AsyncSQLiteBucket(AsyncReservingBucket):
    """One bucket stored in an SQLite table, shared by every process that opens the same file and table.

    The table holds one row per admitted item: ``cum`` (the running total of weight, the row id),
    ``ts`` (ms), ``weight`` and ``name``; it is created on first use. Every lookup is a seek on
    the row id, so the table needs no other index.

    :param conn: a ``sqlite3.Connection`` (made with ``check_same_thread=False`` when the bucket is
        used from several threads, as a limiter's leak thread does; not with ``autocommit=False``:
        each decision opens its own transaction); the async bucket also takes
        a connection of the ``sqlite`` extra's async driver, awaited natively (on an event loop
        that driver cannot run on, give it a ``sqlite3`` connection: each transaction then runs
        in a worker thread). Never closed by the bucket.
    :param table: the table's name, used as a quoted identifier.
    :param synchronous: the connection's ``PRAGMA synchronous``, set on first use with
        ``journal_mode=WAL``; ``NORMAL`` survives a crash of the program but may lose the last
        decisions to a power loss, ``FULL`` survives both and is slower. ``None`` leaves the
        journal mode and the setting as the connection has them.
    """

    def __init__(
        self,
        rates: list[Rate],
        conn: AsyncSQLiteConnection | sqlite3.Connection,
        table: str = DEFAULT_TABLE,
        *,
        synchronous: Synchronous | None = "NORMAL",
    ) -> None:
        self.rates = check_rates(rates)
        self.failing_rate = None
        if not isinstance(table, str) or not table or "\0" in table:
            raise ValueError(f"table must be a non-empty str without NUL characters, got {table!r}")
        if synchronous not in (None, "OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"synchronous must be OFF, NORMAL, FULL, EXTRA or None, got {synchronous!r}")
        self.table = table
        self.conn = conn
        self._db = _Database(conn, f"SQLiteBucket (table {table!r})")
        self._owns_conn = False
        self._ready = False
        self._synchronous = synchronous
        # Spans, not intervals: an item counts at its stamp and the interval's ms after it (see _window).
        self._longest = span(self.rates[-1].interval)
        self._rates = [(rate.limit, span(rate.interval)) for rate in self.rates]
        self._unstorable = max(UNSTORABLE, self.rates[-1].limit)
        self._sql = _Statements(table, self._rates)

    @classmethod
    async def init_from_file(
        cls,
        rates: list[Rate],
        table: str = DEFAULT_TABLE,
        db_path: str | os.PathLike[str] | None = None,
        create_new_table: bool = True,
        use_file_lock: bool = False,
        *,
        synchronous: Synchronous | None = "NORMAL",
        timeout: float = 30.0,
    ) -> Self:
        """Open (creating it if needed) the database file and the table, for a bucket that closes it.

        :param db_path: the file; by default ``default_db_path()``, the same for every process
            of the user, so that they share their buckets.
        :param create_new_table: ``False`` only checks that the table exists.
        :param use_file_lock: accepted for v3 compatibility and ignored: SQLite locks the file itself.
        :param timeout: seconds a decision waits for another process's transaction (busy timeout).
        """
        path = default_db_path() if db_path is None else os.fspath(db_path)
        conn = await arun_blocking(_open_file, path, timeout)
        try:
            bucket = cls(rates, conn, table, synchronous=synchronous)
        except BaseException:
            await arun_blocking(conn.close)
            raise
        bucket._owns_conn = True
        try:
            await bucket._prepare(create=create_new_table)
        except BaseException:
            await bucket.aclose()
            raise
        return bucket

    async def reserve(self, item: RateItem, max_delay: int | None) -> tuple[int, Rate | None]:
        return await self._decide(item, max_delay, record=True)

    async def waiting(self, item: RateItem) -> int:
        delay, _ = await self._decide(item, None, record=False)
        return delay

    async def release(self, item: RateItem) -> None:
        await self._run(self._release_steps(item.timestamp, item.weight, _name(item)), write=True)

    async def leak(self, current_timestamp: int | None = None) -> int:
        if current_timestamp is None:
            return 0  # v3: no time given, nothing is known to be outdated
        result: int = await self._run(self._leak_steps(current_timestamp - self._longest), write=True)
        return result

    async def flush(self) -> None:
        await self._run(_one(self._sql.flush, ()), write=True)
        self.failing_rate = None

    async def count(self) -> int:
        rows: Rows = await self._run(_one(self._sql.count, ()), write=False)
        return int(rows[0][0])

    async def peek(self, index: int) -> RateItem | None:
        if index < 0:
            return None
        rows: Rows = await self._run(_one(self._sql.peek, (index,)), write=False)
        return RateItem(rows[0][0], rows[0][1]) if rows else None

    async def aclose(self) -> None:
        """Close the connection if ``init_from_file`` opened it; a given connection stays open."""
        if self._owns_conn:
            self._owns_conn = False
            await self._db.aclose()

    async def _decide(self, item: RateItem, max_delay: int | None, *, record: bool) -> tuple[int, Rate | None]:
        if item.weight > self._unstorable:
            return NEVER, self.rates[0]
        steps = self._decide_steps(_name(item), item.timestamp, item.weight, max_delay, record)
        delay, index, decided = await self._run(steps, write=record)
        if record:
            item.timestamp = decided  # later than its stamp when a trim overtook it
        return delay, None if index is None else self.rates[index]

    async def _prepare(self, *, create: bool = True) -> None:
        # While another process turns a new file to WAL, SQLite may report it locked without
        # waiting for the busy timeout: retry for a moment (this happens once per file).
        for attempt in range(_SETUP_ATTEMPTS):
            try:
                await self._db.run(self._setup_steps(create), write=False)
                break
            except BackendError as error:
                if attempt == _SETUP_ATTEMPTS - 1 or "locked" not in str(error.__cause__):
                    raise
            await asleep(0.01 * (attempt + 1))
        self._ready = True

    async def _run(self, steps: Steps, *, write: bool) -> Any:
        if not self._ready:
            await self._prepare()
        return await self._db.run(steps, write=write)

    # -- the transactions, as steps: each yields a statement and receives its rows ----------

    def _setup_steps(self, create: bool) -> Steps:
        if self._synchronous is not None:
            # WAL: readers never block the writer, and a commit appends instead of rewriting.
            yield "PRAGMA journal_mode=WAL", ()
            yield f"PRAGMA synchronous={self._synchronous}", ()
        if create:
            yield self._sql.create_table, ()
        else:
            yield self._sql.probe, ()

    def _decide_steps(
        self, name: str, t: int, weight: int, max_delay: int | None, record: bool
    ) -> Generator[Query, Rows, tuple[int, int | None, int]]:
        """The rule of ``pyrate_limiter._window``: find the earliest fit, record, trim."""
        rows = yield self._sql.state, (weight,)
        total, last, base, trimmed, oldest, *firsts = rows[0] if rows else (0, None, 0, None, None)
        # An item stamped before a trim (its process waited for the lock) is decided and recorded
        # no earlier than where its windows hold no trimmed entry: their weight is unknown.
        # Rows still due for trimming change nothing: they end every window before ``t``.
        start = t if trimmed is None else max(t, trimmed + self._longest)
        at, blocking = start, None
        for i, (limit, stamps) in enumerate(self._rates):
            if total + weight - limit <= base:
                continue
            if weight > limit:
                at, blocking = NEVER, i
                break
            fits = firsts[i] + stamps
            if fits > at:
                at, blocking = fits, i
        if not record:
            return (NEVER if at == NEVER else at - t), blocking, t  # from its own stamp, as in _window
        # Delays count from the decided time: the item is restamped with it (see _window).
        delay = at - start
        if oldest is not None and oldest <= t - self._longest:
            yield self._sql.trim, (t - self._longest,)
            yield self._sql.mark, (t - self._longest,)
        if at == NEVER:
            return NEVER, blocking, start
        if blocking is not None and (max_delay is None or delay > max_delay):
            return delay, blocking, start
        if weight <= 0:
            return delay, None, start  # admitted; a row of no weight would change no count
        if last is None or at >= last:
            yield self._sql.insert, (total + weight, at, weight, name)
            return delay, None, start
        # Older than the newest row (clock skew, or behind a reservation): insert in order.
        rows = yield self._sql.before, (at,)
        previous = rows[0][0] if rows else base
        yield self._sql.shift, (weight, previous)
        yield self._sql.unshift, ()
        yield self._sql.insert, (previous + weight, at, weight, name)
        return delay, None, start

    def _release_steps(self, at: int, weight: int, name: str) -> Steps:
        rows = yield self._sql.find, (at, weight, name)
        if rows:
            gone = rows[0][0]
            yield self._sql.delete, (gone,)
            yield self._sql.shift, (-weight, gone)
            yield self._sql.unshift, ()

    def _leak_steps(self, horizon: int) -> Generator[Query, Rows, int]:
        rows = yield self._sql.trimmed, (horizon,)
        yield self._sql.trim, (horizon,)
        yield self._sql.mark, (horizon,)
        return int(rows[0][0])


class AsyncSQLiteClock(AsyncAbstractClock):
    """SQLite's clock (``julianday('now')``) in epoch ms: one time source for processes sharing a file.

    :param conn: the connections ``AsyncSQLiteBucket`` takes, or such a bucket (its connection).
    """

    def __init__(self, conn: AsyncSQLiteConnection | sqlite3.Connection | AsyncSQLiteBucket) -> None:
        self._db = conn._db if isinstance(conn, AsyncSQLiteBucket) else _Database(conn, "SQLiteClock")
        self._owns_conn = False

    @classmethod
    def default(cls) -> Self:
        """A clock over a private in-memory database, closed by ``aclose``."""
        clock = cls(sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None))
        clock._owns_conn = True
        return clock

    async def now(self) -> int:
        rows: Rows = await self._db.run(_one(_NOW, ()), write=False)
        return int(rows[0][0])

    async def aclose(self) -> None:
        """Close the connection if ``default`` opened it; a given connection stays open."""
        if self._owns_conn:
            self._owns_conn = False
            await self._db.aclose()


def default_db_path() -> str:
    """Where ``init_from_file`` keeps buckets by default: one file per user, in the user's cache dir.

    ``$XDG_CACHE_HOME`` (or ``~/.cache``), ``%LOCALAPPDATA%`` on Windows, ``~/Library/Caches`` on
    macOS, each with ``pyrate_limiter/buckets.sqlite``; the temp dir if none of them is writable.
    """
    if sys.platform == "win32":
        root = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        root = str(Path.home() / "Library" / "Caches")
    else:
        root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    folder = Path(root) / "pyrate_limiter"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        user = os.environ.get("USER") or os.environ.get("USERNAME") or str(getattr(os, "getuid", lambda: 0)())
        return str(Path(tempfile.gettempdir()) / f"pyrate_limiter-{user}.sqlite")
    return str(folder / "buckets.sqlite")


class _Database:
    """Runs steps on one connection: awaited on an async driver, in a worker thread on sqlite3.

    Steps of one connection never interleave (a transaction belongs to the connection, not to
    the bucket), so every bucket and clock on it shares one lock.
    """

    def __init__(self, conn: AsyncSQLiteConnection | sqlite3.Connection, owner: str) -> None:
        self._owner = owner
        # Decided once: a sqlite3 connection runs each transaction in one worker thread call
        # (the only way under trio); anything else is the async driver's connection, awaited.
        if isinstance(conn, sqlite3.Connection):
            self._blocking: sqlite3.Connection | None = conn
            self._native: AsyncSQLiteConnection | None = None
            self._lock: Any = _shared(_THREAD_LOCKS, id(conn), threading.Lock)
        # "__aenter__" becomes "__enter__" in the sync twin, which aiosqlite lacks: it is refused there.
        elif hasattr(conn, "execute") and hasattr(conn, "in_transaction") and hasattr(conn, "__aenter__"):
            self._native, self._blocking = conn, None
            self._lock = _shared(_TASK_LOCKS, conn, AsyncLock)
        else:
            raise TypeError(f"conn must be an SQLite connection for {owner}, got {conn!r}")

    async def run(self, steps: Steps, *, write: bool) -> Any:
        """Run ``steps``, in one ``BEGIN IMMEDIATE`` transaction if ``write``, and return their result.

        :raises BackendError: SQLite failed (read-only or corrupt file, disk full, busy for longer
            than the busy timeout); the transaction was rolled back, nothing was recorded.
        """
        try:
            if self._native is None:
                return await arun_blocking(_run_blocking, self._blocking, self._lock, steps, write)
            return await self._run_native(steps, write)
        except sqlite3.Error as error:
            raise BackendError(f"the SQLite backend of {self._owner} failed: {reason(error)}") from error

    async def _run_native(self, steps: Steps, write: bool) -> Any:
        conn = self._native
        assert conn is not None
        async with self._lock:
            if write:
                await conn.execute("BEGIN IMMEDIATE")
            try:
                query = next(steps)
                while True:
                    cursor = await conn.execute(*query)
                    rows = await cursor.fetchall() if cursor.description else []
                    query = steps.send(list(rows))
            except StopIteration as done:
                if write:
                    await conn.execute("COMMIT")
                return done.value
            except BaseException:
                if write:
                    await ashielded(self._rollback)
                raise

    async def _rollback(self) -> None:
        # Unconditional: a cancelled call may still be queued on the driver's thread (even the
        # BEGIN itself), and this ROLLBACK runs after it.
        assert self._native is not None
        with contextlib.suppress(sqlite3.OperationalError):  # no transaction was open
            await self._native.execute("ROLLBACK")

    async def aclose(self) -> None:
        if self._native is None:
            await arun_blocking(_close_blocking, self._blocking, self._lock)
        else:
            await self._native.close()


def _run_blocking(conn: sqlite3.Connection, lock: threading.Lock, steps: Steps, write: bool) -> Any:
    """The same transaction as ``_Database._run_native``, in the calling thread: one worker call."""
    with lock:
        if write:
            conn.execute("BEGIN IMMEDIATE")
        try:
            query = next(steps)
            while True:
                cursor = conn.execute(*query)
                rows = cursor.fetchall() if cursor.description else []
                query = steps.send(rows)
        except StopIteration as done:
            if write:
                conn.execute("COMMIT")
            return done.value
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise


def _close_blocking(conn: sqlite3.Connection, lock: threading.Lock) -> None:
    with lock:
        conn.close()
        with _REGISTRY_LOCK:
            _THREAD_LOCKS.pop(id(conn), None)


def _open_file(path: str, timeout: float) -> sqlite3.Connection:
    # check_same_thread=False: the sync twin leaks from a background thread, the async one runs
    # in worker threads; _Database's lock keeps its transactions apart. isolation_level=None:
    # transactions are ours (BEGIN IMMEDIATE), never the driver's implicit deferred ones.
    try:
        return sqlite3.connect(path, timeout=timeout, check_same_thread=False, isolation_level=None)
    except sqlite3.Error as error:
        raise BackendError(f"the SQLite backend could not open {path!r}: {reason(error)}") from error


def _one(query: str, params: Sequence[Any]) -> Generator[Query, Rows, Rows]:
    rows = yield query, params
    return rows


def _name(item: RateItem) -> str:
    return item.name if isinstance(item.name, str) else str(item.name)


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


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


_NO_ROW = 2**63 - 1
_NOW = "SELECT CAST(round((julianday('now') - 2440587.5) * 86400000) AS INTEGER)"


class _Statements:
    """The fixed SQL text of one table, so that the driver's statement cache always hits.

    ``cum`` is the row id: a window's start and the newest row are B-tree seeks on the table itself.
    Trimming keeps the newest trimmed row with weight 0: its ``cum`` is the weight ever trimmed,
    its ``ts`` how far back windows are still known.
    """

    def __init__(self, table: str, rates: list[tuple[int, int]]) -> None:
        t = _quote(table)
        newest = f"SELECT max(cum) FROM {t}"  # max and min of the row id: one B-tree seek each
        oldest_base = f"SELECT cum - weight FROM {t} WHERE cum = (SELECT min(cum) FROM {t})"
        self.create_table = (
            f"CREATE TABLE IF NOT EXISTS {t} "
            "(cum INTEGER PRIMARY KEY, ts INTEGER NOT NULL, weight INTEGER NOT NULL, name TEXT NOT NULL)"
        )
        # One row: total, newest ts, base, and per rate the ts of the first row whose running total
        # reaches total + weight - limit (limits are ints from Rate, never user text).
        # Also the trimmed row's ts (the oldest row, if of weight 0) and the oldest live row's ts.
        firsts = "".join(
            f", (SELECT ts FROM {t} WHERE cum >= n.cum + ?1 - {int(limit)} ORDER BY cum LIMIT 1)" for limit, _ in rates
        )
        self.state = (
            f"SELECT n.cum, n.ts, o.cum - o.weight, CASE WHEN o.weight = 0 THEN o.ts END, "
            f"(SELECT ts FROM {t} WHERE cum > o.cum - o.weight ORDER BY cum LIMIT 1){firsts} "
            f"FROM {t} AS n, {t} AS o WHERE n.cum = ({newest}) AND o.cum = (SELECT min(cum) FROM {t})"
        )
        self.probe = f"SELECT cum, ts, weight, name FROM {t} LIMIT 0"
        # Rows are in ``ts`` order as in ``cum`` order: a time is found by walking the row ids
        # from one end, never past the rows the statement removes or moves anyway.
        kept = f"coalesce((SELECT cum FROM {t} WHERE ts > ?1 ORDER BY cum LIMIT 1), {_NO_ROW})"
        self.trim = f"DELETE FROM {t} WHERE cum < (SELECT cum FROM {t} WHERE cum < {kept} ORDER BY cum DESC LIMIT 1)"
        self.mark = f"UPDATE {t} SET weight = 0 WHERE cum = (SELECT min(cum) FROM {t}) AND ts <= ?1 AND weight != 0"
        self.trimmed = f"SELECT coalesce(sum(weight), 0) FROM {t} WHERE cum < {kept}"
        self.insert = f"INSERT INTO {t} (cum, ts, weight, name) VALUES (?, ?, ?, ?)"
        self.before = f"SELECT cum FROM {t} WHERE ts <= ? ORDER BY cum DESC LIMIT 1"
        # Row ids must stay unique at every step of an UPDATE: shift through negative values.
        self.shift = f"UPDATE {t} SET cum = -(cum + ?) WHERE cum > ?"
        self.unshift = f"UPDATE {t} SET cum = -cum WHERE cum < 0"
        self.find = (
            f"SELECT cum FROM {t} WHERE ts = ?1 AND weight = ?2 AND name = ?3 AND cum > coalesce("
            f"(SELECT cum FROM {t} WHERE ts < ?1 ORDER BY cum DESC LIMIT 1), -1) ORDER BY cum DESC LIMIT 1"
        )
        self.delete = f"DELETE FROM {t} WHERE cum = ?"
        self.flush = f"DELETE FROM {t}"
        self.count = f"SELECT coalesce(({newest}) - ({oldest_base}), 0)"
        # The unit ``index`` places from the newest lies in the first row whose running total
        # reaches it, unless that row starts at or after it: then the unit is gone.
        self.peek = (
            f"WITH u(unit) AS (SELECT ({newest}) - ?1) SELECT name, ts FROM (SELECT name, ts, cum - weight "
            f"AS start FROM {t} WHERE cum >= (SELECT unit FROM u) ORDER BY cum LIMIT 1), u WHERE start < unit"
        )
