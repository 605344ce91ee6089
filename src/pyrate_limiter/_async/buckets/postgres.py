"""PostgreSQL buckets shared by processes and machines: each decision is one call of a per-table
PL/pgSQL function that holds a per-bucket advisory lock, and a clock reading the server's time.
The SQL is in ``_drivers/postgres_table.py``, the calls to the pool in ``_drivers/postgres.py``."""

from __future__ import annotations

import functools
import hashlib
from typing import TYPE_CHECKING, Any

from ..._batching import AsyncBatcher
from ..._drivers.postgres import async_driver
from ..._drivers.postgres_table import LOCK, NOW, TableSQL, integers, items, parse_integers
from ..._rate import RateItem, check_name, check_pause, check_rates
from ..._window import NEVER, UNSTORABLE, earliest_fit, judged_at, span, wait
from ..clocks import AsyncAbstractClock
from .base import AsyncReservingBucket

if TYPE_CHECKING:
    from ..._drivers.postgres import Params
    from ..._rate import Rate, Verdict
    from ..._state import Usage
    from ..._typing import AsyncPostgresPool

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
        pool: AsyncPostgresPool,
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
        self._driver = async_driver(pool, f"PostgresBucket (table {table!r}, key {key!r})")
        self._limits = [rate.limit for rate in self.rates]
        # Spans, not intervals (an item counts at its stamp and the interval's ms after it: see
        # _window); the function's p_intervals receives them, so its arithmetic is the closed window.
        self._spans = [span(rate.interval) for rate in self.rates]
        self._longest = self._spans[-1]
        self._unstorable = max(UNSTORABLE, self._limits[-1])
        self._sql = TableSQL.of(table, advisory_key(table, "\0setup"))  # a NUL-free key can never be this one
        # The bucket's constants are parameters of the one statement per table.
        self._constants = (str(self.lock_key), integers(self._limits), integers(self._spans), str(durable))
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
        if rate is not None:
            return delay, self.rates[rate], left
        # Decided later than its stamp when a trim overtook it: then the verdict says where.
        return (delay, None) if decided == item.timestamp else (delay, None, decided + delay)

    async def waiting(self, item: RateItem) -> int:
        if item.weight > self._unstorable:
            return NEVER
        request = (_name(item), item.timestamp, item.weight, None)
        ((delay, rate, decided, _),) = await self._decide(LOCK_TIMEOUT, False, [request])
        # Fitting at once is fitting at the time decided at: later than a stamp behind the floor.
        return decided - item.timestamp if rate is None else delay

    async def release(self, item: RateItem) -> None:
        params = {"bucket": self.key, "ts": item.timestamp, "weight": item.weight, "name": _name(item)}
        await self._locked(self._sql.release, params)

    async def state(self, item: RateItem) -> tuple[int, Usage]:
        # One statement reads it all; a weight past storing is asked about as 0, and never fits.
        weight, t = (0 if item.weight > self._unstorable else item.weight), item.timestamp
        params = {"bucket": self.key, "weight": weight, "t": t, "limits": self._limits, "spans": self._spans}
        row = await self._driver.run([(self._sql.state, params)], self._sql.setup)
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
        row = await self._driver.run([(self._sql.pause, params)], self._sql.setup)
        assert row is not None
        return int(row[0])

    async def paused_until(self, name: str) -> int:
        """When the pause on ``name`` ends (ms on the items' clock); 0 when none was set (or since flush)."""
        check_name(name)
        row = await self._driver.run([(self._sql.paused, [self.key])], self._sql.setup)
        assert row is not None
        return int(row[0])

    async def leak(self, current_timestamp: int) -> int:
        row = await self._locked(self._sql.leak, [self.key, current_timestamp - self._longest])
        return 0 if row is None else int(row[0])

    async def flush(self) -> None:
        await self._locked(self._sql.flush, [self.key])
        self.failing_rate = None

    async def count(self) -> int:
        row = await self._driver.run([(self._sql.count, {"bucket": self.key})], self._sql.setup)
        return 0 if row is None else int(row[0])

    async def peek(self, index: int) -> RateItem | None:
        if index < 0:
            return None
        row = await self._driver.run([(self._sql.peek, {"bucket": self.key, "index": index})], self._sql.setup)
        return None if row is None else RateItem(row[0], int(row[1]))

    async def _decide(self, lock_timeout: int, record: bool, requests: list[Request]) -> list[Decision]:
        """One call of the bucket's function deciding ``requests`` in order (recording them if ``record``)."""
        lock, limits, spans, durable = self._constants
        names, numbers = items(requests)
        params = [lock, self.key, names, numbers, limits, spans, str(record), str(lock_timeout), durable]
        flat: list[Any] = parse_integers(await self._driver.call(self._sql.decide, params, self._sql.setup))
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
        return await self._driver.run([(LOCK, [self.lock_key]), (query, params)], self._sql.setup)


class AsyncPostgresClock(AsyncAbstractClock):
    """The PostgreSQL server's clock, so that processes on machines with skewed clocks agree.

    Read as epoch milliseconds from ``clock_timestamp()``: a ``timestamptz``, hence free of any
    time-zone setting. Takes the same pools as ``AsyncPostgresBucket``.
    """

    def __init__(self, pool: AsyncPostgresPool) -> None:
        self._driver = async_driver(pool, "PostgresClock")

    async def now(self) -> int:
        row = await self._driver.run([(NOW, None)])
        assert row is not None
        return int(row[0])


def advisory_key(table: str, key: str) -> int:
    """A stable signed 64-bit hash of ``table`` and ``key``: the bucket's advisory lock."""
    digest = hashlib.blake2b(f"{table}\0{key}".encode(), digest_size=8, person=b"pyrate-lock").digest()
    return int.from_bytes(digest, "big", signed=True)


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


_MAX_BATCHERS = 16  # distinct lock waits a bucket keeps a batcher for
