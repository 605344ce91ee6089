"""SQLite buckets: state in a file that the processes of one machine share and that outlives them.

Each decision is one ``BEGIN IMMEDIATE`` transaction, so SQLite's own lock makes it atomic.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..._concurrency import arun_blocking, asleep
from ..._drivers.sqlite import PAUSES, SQL, TableSQL, async_driver
from ..._drivers.sqlite_file import FORKED, INHERITED, Forks, open_file, open_watched, reopen_in_child
from ..._errors import BackendError
from ..._rate import RateItem, check_name, check_pause, check_rates
from ..._window import NEVER, UNSTORABLE, earliest_fit, horizon, judged_at, span, wait
from ..clocks import AsyncAbstractClock
from .base import AsyncReservingBucket

if TYPE_CHECKING:
    from collections.abc import Generator, Sequence

    from typing_extensions import Self

    from ..._drivers.sqlite import Query, Rows, Steps
    from ..._rate import Rate, Verdict
    from ..._state import Usage
    from ..._typing import AsyncSQLiteConnection

DEFAULT_TABLE = "rate_bucket"
_SETUP_ATTEMPTS = 20
Synchronous = Literal["OFF", "NORMAL", "FULL", "EXTRA"]


class AsyncSQLiteBucket(AsyncReservingBucket):
    """One bucket stored in an SQLite table, shared by every process that opens the same file and table.

    The table holds one row per admitted item: ``cum`` (the running total of weight, the row id),
    ``ts`` (ms), ``weight`` and ``name``; it is created on first use. Every lookup is a seek on
    the row id, so the table needs no other index. A pause (``pause_until``) is one row of the
    file's ``pyrate_limiter_pauses`` table, keyed by the table's name, also created on first use.

    :param conn: a ``sqlite3.Connection`` (made with ``check_same_thread=False`` when the bucket is
        used from several threads, as a limiter's leak thread does; not with ``autocommit=False``:
        each decision opens its own transaction); the async bucket also takes
        a connection of the ``sqlite`` extra's async driver, awaited natively (on an event loop
        that driver cannot run on, give it a ``sqlite3`` connection: each transaction then runs
        in a worker thread). Never closed by the bucket. Its busy timeout bounds how long a
        decision waits for another connection's lock, or the decision's ``max_delay`` if shorter:
        the bucket then lowers the connection's ``PRAGMA busy_timeout`` to that, and sets it back
        before the next decision with no shorter bound.
    :param table: the table's name, used as a quoted identifier.
    :param synchronous: the connection's ``PRAGMA synchronous``, set on first use with
        ``journal_mode=WAL``; ``NORMAL`` survives a crash of the program but may lose the last
        decisions to a power loss, ``FULL`` survives both and is slower. ``None`` leaves the
        journal mode and the setting as the connection has them.
    :raises BackendError: from any method, once the file was deleted or replaced under the
        bucket. The bucket knows its file when it opened it (``init_from_file``) or, for a
        given connection, from ``PRAGMA database_list`` on first use (an in-memory database has
        none), and checks it at every leak, every few dozen transactions and after any failure.
        It then logs a WARNING on the ``pyrate_limiter`` logger and decides nothing more, even
        over a file it opened itself: what it admitted is in the old file only, so reopening
        the path would admit the limit again within one window (and the ``-wal`` and ``-shm``
        files left at the path would be shared by two databases, which SQLite warns corrupts
        them). Close it and open the path again to start over from what the file there holds.
    """

    def __init__(
        self,
        rates: list[Rate],
        conn: AsyncSQLiteConnection,
        table: str = DEFAULT_TABLE,
        *,
        synchronous: Synchronous | None = "NORMAL",
    ) -> None:
        self.rates = check_rates(rates)
        self.failing_rate = None
        if not isinstance(table, str) or not table or "\0" in table:
            raise ValueError(f"table must be a non-empty str without NUL characters, got {table!r}")
        if table.lower() == PAUSES:
            raise ValueError(f"table cannot be {PAUSES!r}: the file keeps its buckets' pauses in that table")
        if synchronous not in (None, "OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"synchronous must be OFF, NORMAL, FULL, EXTRA or None, got {synchronous!r}")
        self.table = table
        self.conn = conn
        self._db = async_driver(conn, self._owner())
        self._owns_conn = False
        self._forks = Forks.count  # a run in a forked child sees more
        self._reopen: tuple[str, float] | None = None  # the file and timeout init_from_file opened
        self._ready = False
        self._synchronous = synchronous
        # Spans, not intervals: an item counts at its stamp and the interval's ms after it (see _window).
        self._longest = span(self.rates[-1].interval)
        self._rates = [(rate.limit, span(rate.interval)) for rate in self.rates]
        self._unstorable = max(UNSTORABLE, self.rates[-1].limit)
        self._sql = TableSQL.of(table, (rate.limit for rate in self.rates))

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
        :param timeout: seconds a decision waits for another process's transaction (busy
            timeout), or its ``max_delay`` if shorter.
        """
        path = default_db_path() if db_path is None else os.fspath(db_path)
        conn, opened = await arun_blocking(open_watched, path, timeout)
        try:
            bucket = cls(rates, conn, table, synchronous=synchronous)
        except BaseException:
            await arun_blocking(conn.close)
            raise
        bucket._owns_conn = True
        if opened is not None:
            bucket._db.file.follow(*opened)
            bucket._reopen = (opened[0], timeout)
        try:
            await bucket._prepare(create=create_new_table)
        except BaseException:
            await bucket.aclose()
            raise
        return bucket

    async def reserve(self, item: RateItem, max_delay: int | None) -> Verdict:
        return await self._decide(item, max_delay, record=True)

    async def waiting(self, item: RateItem) -> int:
        return (await self._decide(item, None, record=False))[0]

    async def state(self, item: RateItem) -> tuple[int, Usage]:
        # One statement reads it all; a weight past storing is asked about as 0, and never fits.
        weight, t, n = (0 if item.weight > self._unstorable else item.weight), item.timestamp, len(self._rates)
        params = (weight, *(t - stamps for _, stamps in self._rates))
        rows: Rows = await self._run(_one(self._sql.usage, params), write=False)
        total, _, base, trimmed, _, paused, *rest = rows[0]
        start = max(judged_at(t, trimmed, self._longest), paused)
        at, _ = earliest_fit(start, weight, self._rates, total, base, rest[:n])
        usage = []
        for i, (rate, (_, stamps)) in enumerate(zip(self.rates, self._rates, strict=True)):
            before, first = rest[n + 2 * i], rest[n + 2 * i + 1]
            used = total - (base if before is None else before)
            usage.append((rate, used, first + stamps - t if used else 0))
        return (NEVER if weight != item.weight else wait(t, at)), usage

    async def release(self, item: RateItem) -> None:
        await self._run(self._release_steps(item.timestamp, item.weight, _name(item)), write=True)

    async def leak(self, current_timestamp: int) -> int:
        steps = self._leak_steps(horizon(current_timestamp, self._longest))
        result: int = await self._run(steps, write=True, check=True)  # an idle bucket checks its file too
        return result

    async def flush(self) -> None:
        await self._run(self._flush_steps(), write=True)
        self.failing_rate = None

    async def pause_until(self, name: str, until: int) -> int:
        """Admit nothing under ``name`` before ``until`` (ms on the items' clock) for every caller
        sharing the backend; a later end already set stays. :return: the end now in force."""
        check_pause(name, until)
        result: int = await self._run(self._pause_steps(until), write=True)
        return result

    async def paused_until(self, name: str) -> int:
        """When the pause on ``name`` ends (ms on the items' clock); 0 when none was set (or since flush)."""
        check_name(name)
        rows: Rows = await self._run(_one(self._sql.paused, ()), write=False)
        return int(rows[0][0])

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
            if self._forks != Forks.count:  # forked, never used here: the connection is the parent's
                INHERITED.append(self.conn)
                return
            await self._db.aclose()

    async def _decide(self, item: RateItem, max_delay: int | None, *, record: bool) -> Verdict:
        if item.weight > self._unstorable:
            return NEVER, self.rates[0]
        steps = self._decide_steps(_name(item), item.timestamp, item.weight, max_delay, record)
        # A decision that may wait waits no longer than that for another process's lock either.
        busy_ms = max_delay if record else None
        delay, index, decided, remaining = await self._run(steps, write=record, busy_ms=busy_ms)
        if index is None:
            # Decided later than its stamp when a trim overtook it: then the verdict says where.
            return (delay, None) if decided == item.timestamp else (delay, None, decided + delay)
        return (delay, self.rates[index], remaining) if remaining else (delay, self.rates[index])

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

    async def _run(self, steps: Steps, *, write: bool, check: bool = False, busy_ms: int | None = None) -> Any:
        if self._forks != Forks.count:
            self._leave_inherited()
        if not self._ready:
            await self._prepare()
        return await self._db.run(steps, write=write, check=check, busy_ms=busy_ms)

    def _leave_inherited(self) -> None:
        """In a forked child: open the file afresh, as SQLite asks (a connection must not cross a fork).

        A given connection stays: the bucket cannot know how to open it. The connect blocks,
        in both variants: once per child, and never across an await under ``FORKED``.
        """
        with FORKED:
            if self._forks == Forks.count:
                return
            if self._owns_conn and self._reopen is not None:
                path, timeout = self._reopen
                conn, opened = reopen_in_child(path, timeout, self._db.file.identity)
                INHERITED.append(self.conn)
                self.conn, self._db, self._ready = conn, async_driver(conn, self._owner()), False
                self._db.file.follow(*opened)
            self._forks = Forks.count

    def _owner(self) -> str:
        return f"SQLiteBucket (table {self.table!r})"

    # -- the transactions, as steps: each yields a statement and receives its rows ----------

    def _setup_steps(self, create: bool) -> Steps:
        if self._synchronous is not None:
            # WAL: readers never block the writer, and a commit appends instead of rewriting.
            yield SQL["wal"], ()
            yield SQL["synchronous"].format(synchronous=self._synchronous), ()
        yield (self._sql.create_table if create else self._sql.probe), ()
        yield self._sql.create_pauses, ()  # also beside a table of a version without pauses
        if self._db.file.path is None:  # a given connection: learn its file, if it has one
            self._db.file.learn((yield SQL["database_list"], ()))

    def _decide_steps(
        self, name: str, t: int, weight: int, max_delay: int | None, record: bool
    ) -> Generator[Query, Rows, tuple[int, int | None, int, tuple[int, ...]]]:
        """The rule of ``pyrate_limiter._window``: find the earliest fit, record, trim.

        :return: the delay (or wait), the index of the rate that refused (``None``: recorded), the
            time decided at and, for a refusal that recorded nothing, the units each rate has left.
        """
        rows = yield self._sql.state, (weight,)
        total, last, base, trimmed, oldest, paused, *firsts = rows[0]
        # An item stamped before a trim (its process waited for the lock) is decided and recorded
        # no earlier than where its windows hold no trimmed entry: their weight is unknown.
        # Rows still due for trimming change nothing: they end every window before ``t``.
        start = judged_at(t, trimmed, self._longest)
        # A pause moves only where the search starts: the item keeps its stamp and waits it out.
        at, blocking = earliest_fit(paused if paused > start else start, weight, self._rates, total, base, firsts)
        if blocking is None and at > start:
            blocking = 0  # only the pause held it back
        if not record:
            return wait(t, at), blocking, t, ()  # from its own stamp, as in _window
        # Delays count from the decided time, which the verdict gives when not t (see _window).
        delay = at - start
        bound = horizon(t, self._longest)
        if oldest is not None and oldest <= bound:
            yield self._sql.trim, (bound,)
            yield self._sql.mark, (bound,)
        if at == NEVER or (blocking is not None and (max_delay is None or delay > max_delay)):
            left = []  # what each rate has left at the decided time, read in the same transaction
            rows = yield self._sql.befores, tuple(start - stamps for _, stamps in self._rates)
            for (limit, _), before in zip(self._rates, rows[0], strict=True):
                left.append(max(limit - (total - (base if before is None else before)), 0))
            return (NEVER if at == NEVER else delay), blocking, start, tuple(left)
        if weight <= 0:
            return delay, None, start, ()  # admitted; a row of no weight would change no count
        if last is None or at >= last:
            yield self._sql.insert, (total + weight, at, weight, name)
            return delay, None, start, ()
        # Older than the newest row (clock skew, or behind a reservation): insert in order.
        rows = yield self._sql.before, (at,)
        previous = rows[0][0] if rows else base
        yield self._sql.shift, (weight, previous)
        yield self._sql.unshift, ()
        yield self._sql.insert, (previous + weight, at, weight, name)
        return delay, None, start, ()

    def _release_steps(self, at: int, weight: int, name: str) -> Steps:
        rows = yield self._sql.find, (at, weight, name)
        if rows:
            gone = rows[0][0]
            yield self._sql.delete, (gone,)
            yield self._sql.shift, (-weight, gone)
            yield self._sql.unshift, ()

    def _pause_steps(self, until: int) -> Generator[Query, Rows, int]:
        yield self._sql.pause, (until,)
        rows = yield self._sql.paused, ()
        return int(rows[0][0])

    def _flush_steps(self) -> Steps:
        yield self._sql.flush, ()
        yield self._sql.unpause, ()

    def _leak_steps(self, bound: int) -> Generator[Query, Rows, int]:
        rows = yield self._sql.trimmed, (bound,)
        yield self._sql.trim, (bound,)
        yield self._sql.mark, (bound,)
        return int(rows[0][0])


class AsyncSQLiteClock(AsyncAbstractClock):
    """SQLite's clock (``julianday('now')``) in epoch ms: one time source for processes sharing a file.

    :param conn: the connections ``AsyncSQLiteBucket`` takes, or such a bucket (its connection).
    """

    def __init__(self, conn: AsyncSQLiteConnection | AsyncSQLiteBucket) -> None:
        self._db = conn._db if isinstance(conn, AsyncSQLiteBucket) else async_driver(conn, "SQLiteClock")
        self._owns_conn = False

    @classmethod
    def default(cls) -> Self:
        """A clock over a private in-memory database, closed by ``aclose``."""
        clock = cls(open_file(":memory:"))
        clock._owns_conn = True
        return clock

    async def now(self) -> int:
        rows: Rows = await self._db.run(_one(SQL["now"], ()), write=False)
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


def _one(query: str, params: Sequence[Any]) -> Generator[Query, Rows, Rows]:
    rows = yield query, params
    return rows


def _name(item: RateItem) -> str:
    return item.name if isinstance(item.name, str) else str(item.name)
