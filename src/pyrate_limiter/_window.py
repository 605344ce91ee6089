"""The sliding-window log: every decision's arithmetic, without I/O.

The rule every backend implements (the in-memory bucket runs this very code; Redis, SQLite and
PostgreSQL run the same steps server-side):

* Stamps are integer milliseconds floored from a clock, so an item stamped ``s`` happened
  somewhere in the real interval ``[s, s + 1)``. For it never to share a real window of ``I`` ms
  with ``L`` later units, it counts at every stamp from ``s`` through ``s + I`` inclusive and
  frees its room at ``s + I + 1``: a rate's window at ``t`` is the closed ``[t - I, t]``, which
  holds ``I + 1`` stamps, the rate's *span* (``span()``). Every formula below is in spans.
* A bucket keeps one entry per admitted item: its timestamp, its weight and a running total
  ``cum`` (the weight of that entry plus everything recorded before it), oldest first.
* ``P(x)``, the weight recorded at or before time ``x``, is one lookup; the weight in the window
  of rate ``(L, I)`` at ``s`` and everything later is ``total - P(s - span)``.
* An item of weight ``w`` fits at time ``s`` when, for every rate, ``P(s - span) >= total + w - L``.
  The earliest such ``s >= t`` is ``max(t, ts[k] + span)`` over the rates, ``k`` being the first
  entry whose ``cum`` reaches ``total + w - L``. Counting the entries after ``s`` as well keeps
  reservations first in line (FIFO) and every window within its limit.
* Entries at or before ``t - longest span`` can never count again and are trimmed. The newest
  trimmed timestamp ``b`` is remembered, and no item is judged or recorded before
  ``b + longest span``: an item stamped before a trim that already happened (clock skew, a caller
  that lagged) counts as arriving at that point, since its own window would reach back over
  entries that are gone. It is decided at that time, and any delay counts from it (the
  verdict says where it was recorded: ``Verdict``).
* A pause (server feedback: ``pause_until``) ends at ``P``: an item stamped ``t < P`` fits at
  the earliest time ``>= P`` by the rule above, and waits from ``t`` (unlike the floor, a pause
  is the caller's to sit out). Pauses only lengthen: the end kept is the latest.
"""

from __future__ import annotations

import threading
from array import array
from bisect import bisect_left, bisect_right
from typing import TYPE_CHECKING, Any

from ._forking import hold_at_fork
from ._rate import RateItem

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ._rate import Rate, Verdict

NEVER = -1
"""The wait reported for an item heavier than some rate's limit: it can never fit."""

UNSTORABLE = 2**53
"""A weight above this and above every limit fits no rate, and not every backend's numbers (a
double, a 64-bit integer) hold it: it is refused as never fitting before it reaches them."""

FOREVER = 2**62
"""``max_delay=math.inf`` as the backends take it: longer than any wait, and a 64-bit integer."""


def span(interval: int) -> int:
    """How many stamps one item counts at under a rate of ``interval`` ms: ``s`` through ``s + interval``.

    The one place the closed window is stated; every backend computes with spans, never intervals.
    """
    return interval + 1


# -- the rule in the form of a store that reads a bucket's state in one query (SQLite) ---------


def judged_at(t: int, trimmed: int | None, longest: int) -> int:
    """When an item stamped ``t`` is judged and recorded: not before the newest trimmed stamp plus the longest span."""
    return t if trimmed is None else max(t, trimmed + longest)


def horizon(t: int, longest: int) -> int:
    """The newest stamp that no window at ``t`` or later holds: entries at or before it are trimmed."""
    return t - longest


def earliest_fit(
    t: int, weight: int, rates: Sequence[tuple[int, int]], total: int, base: int, firsts: Sequence[int]
) -> tuple[int, int | None]:
    """The earliest time ``>= t`` an item of ``weight`` fits, and the index of the rate that pushed it past ``t``.

    ``SlidingLog._earliest`` with every rate's lookup done beforehand: ``rates[i]`` is
    ``(limit, span)``, ``firsts[i]`` the timestamp of the first entry whose ``cum`` reaches
    ``total + weight - limit``, ``base`` the ``cum`` of the last trimmed entry.
    """
    at, blocking = t, None
    for i, (limit, stamps) in enumerate(rates):
        if total + weight - limit <= base:
            continue  # room in this rate at any time
        if weight > limit:
            return NEVER, i
        if firsts[i] + stamps > at:
            at, blocking = firsts[i] + stamps, i
    return at, blocking


def wait(t: int, at: int) -> int:
    """The wait reported for an item stamped ``t`` that fits at ``at``: ``NEVER`` stays ``NEVER``."""
    return NEVER if at == NEVER else at - t


_COMPACT_AT = 4096
# 'l' where a C long has 64 bits: an 'l' array converts an appended int with PyLong_AsLong, a 'q'
# one converts any int above 2**30 (every timestamp) through a byte array, which costs more.
_INT64 = "l" if array("l").itemsize == 8 else "q"
_ADMITTED = (0, None)
_NO_FLOOR = -(2**62)
_NO_PAUSE = -(2**62)
_NEVER_TRIM = 2**62
_EMPTY = 2**62  # the newest timestamp of an empty log: no item is newer, so the first is inserted


class SlidingLog:
    """One bucket's admitted items, oldest first, with every decision taken under one lock.

    Entries live in two arrays of 64-bit ints (timestamp, running total) and a list of names:
    24 bytes an item. The newest timestamp, the total and the next trim time are also kept as
    plain attributes, so admitting an item reads no array.
    """

    __slots__ = (
        "__weakref__",
        "_base",
        "_blocked",
        "_cum",
        "_floor",
        "_head",
        "_holding",
        "_lock",
        "_longest",
        "_names",
        "_newest",
        "_paused",
        "_rates",
        "_room",
        "_roomy",
        "_seen",
        "_total",
        "_trim_at",
        "_ts",
    )

    def __init__(self, rates: list[Rate], *, guarded: bool = False) -> None:
        """:param guarded: every call is made under its owner's lock, which the owner registers
        with ``hold_at_fork`` (the keyed bucket: a million logs then cost the fork registry nothing)."""
        self._rates = [(rate.limit, span(rate.interval), rate) for rate in rates]
        self._longest = max(span(rate.interval) for rate in rates)  # a span, like every length here
        self._room = min(rate.limit for rate in rates)  # below this much weight, every rate has room
        # threading.Lock in both variants: no await happens while it is held, and the sync
        # twin is used from caller threads and the factory's leak thread at once.
        self._lock = threading.Lock()
        if not guarded:
            hold_at_fork(self)
        self._ts = array(_INT64)
        self._cum = array(_INT64)
        self._names: list[Any] = []
        self._head = 0  # entries before _head are trimmed, awaiting compaction
        self._base = 0  # cum of the last trimmed entry
        self._floor = _NO_FLOOR  # the last trimmed timestamp + longest: nothing is judged earlier
        self._total = 0  # cum of the newest entry (the base when empty)
        self._roomy = self._room  # up to this total, every rate has room: base + room
        self._newest = _EMPTY  # timestamp of the newest entry; an empty log takes the slow path
        self._trim_at = _NEVER_TRIM  # the oldest entry's timestamp + longest
        self._paused = _NO_PAUSE  # nothing is admitted before this: the latest end set, kept until flush
        self._holding = False  # a pause may still hold: _roomy is -1, so no item takes the fast path
        # (weight, until, earliest fit, rate, remaining, since) of the last refusal, made at ``since``:
        # valid until the log changes or, at ``until``, a unit frees; it spares a full bucket's
        # stream of refusals the search.
        self._blocked: tuple[int, int, int, Rate, tuple[int, ...], int] | None = None
        # (t, weight, total, answer) of the last state(): asked again in the same ms of an unchanged log.
        self._seen: tuple[int, int, int, tuple[int, list[tuple[Rate, int, int]]]] | None = None

    def reserve(self, item: RateItem, max_delay: int | None) -> Verdict:
        """Record ``item`` at the earliest time it fits, if that is within ``max_delay``.

        An item stamped behind the floor is decided at the floor (see the module's rule).

        :return: ``(delay, None)`` when recorded at ``item.timestamp + delay``, ``(delay, None,
            at)`` when recorded at ``at``, decided at the floor; ``(wait, rate, remaining)`` when
            not, with the wait it would have needed (``NEVER`` if it cannot fit), the rate that
            refused it and the units each rate has left at ``t``.
        """
        t, weight = item.timestamp, item.weight
        # acquire/release rather than `with`: half the cost, on the path every acquire takes.
        lock = self._lock
        lock.acquire()
        if t < self._floor:
            lock.release()
            return self._late(item, max_delay)
        try:
            if t >= self._trim_at:
                self._trim(t - self._longest)
            total = self._total + weight
            if total <= self._roomy and t >= self._newest:
                # The usual admit: even the tightest rate has room, and nothing is newer.
                self._ts.append(t)
                self._cum.append(total)
                self._names.append(item.name)
                self._total = total
                self._newest = t
                self._blocked = None
                return _ADMITTED
            rate: Rate | None
            blocked = self._blocked
            if blocked is not None and blocked[0] == weight and blocked[5] <= t < blocked[1]:
                # Refused as last time: the log has not changed, nor has any unit freed since (an
                # earlier stamp's windows reach further back: they may hold more).
                at, rate, remaining = blocked[2], blocked[3], blocked[4]
            else:
                if self._holding and t >= self._paused:  # over: the fast path is back
                    self._holding = False
                    self._refresh()
                at, rate = self._earliest(max(t, self._paused), weight)
                if at == t:  # fits, behind the newest entry or into an empty log
                    self._insert(item.name, t, weight)
                    return _ADMITTED
                if rate is None:  # room at once, but for the pause
                    rate = self._rates[0][2]
                remaining, frees = self._remaining(t)
                self._blocked = (weight, frees if at == NEVER else min(at, frees), at, rate, remaining, t)
            if at != NEVER and max_delay is not None and at - t <= max_delay:
                self._insert(item.name, at, weight)
                return at - t, None
            return (NEVER if at == NEVER else at - t), rate, remaining
        finally:
            lock.release()

    def _late(self, item: RateItem, max_delay: int | None) -> Verdict:
        """``reserve`` for an item stamped behind the floor: decided at the floor, as one stamped so."""
        floor = self._floor
        verdict = self.reserve(RateItem(item.name, floor, item.weight), max_delay)
        if verdict[1] is not None or len(verdict) == 3:  # refused, or behind a floor risen since
            return verdict
        return verdict[0], None, floor + verdict[0]

    def waiting(self, t: int, weight: int) -> int:
        """Milliseconds from ``t`` until an item of ``weight`` would fit; ``NEVER`` if it cannot.

        Counted from ``t`` itself, also for a stamp behind the floor: nothing fits before it.
        """
        with self._lock:
            at, _ = self._earliest(max(t, self._floor, self._paused), weight)
            return NEVER if at == NEVER else at - t

    def state(self, t: int, weight: int) -> tuple[int, list[tuple[Rate, int, int]]]:
        """``waiting(t, weight)``, and for every rate the units counted at ``t`` and ms until one frees.

        A rate counts at ``t`` the units stamped after ``t - span`` (reservations ahead too); the
        oldest of them frees its room at its stamp plus the span.
        """
        with self._lock:
            seen = self._seen
            if seen is not None and seen[0] == t and seen[1] == weight and seen[2] == self._total:
                return seen[3]  # an append changes the total; any other change clears _seen
            at, _ = self._earliest(max(t, self._floor, self._paused), weight)
            ts, cum, head = self._ts, self._cum, self._head
            usage = []
            for _, stamps, rate in self._rates:
                i = bisect_right(ts, t - stamps, head)  # the first entry that counts at t
                before = cum[i - 1] if i > head else self._base
                used = self._total - before
                # The oldest unit counted: the first entry past ``before`` (one of weight 0 holds none).
                usage.append((rate, used, ts[bisect_right(cum, before, i)] + stamps - t if used else 0))
            answer = (NEVER if at == NEVER else at - t), usage
            self._seen = (t, weight, self._total, answer)
            return answer

    def pause(self, until: int) -> int:
        """Admit nothing before ``until``; a later end already set stays. Returns the end in force."""
        with self._lock:
            if until > self._paused:
                self._paused, self._holding = until, True
                self._refresh()
            return self._paused

    def paused(self) -> int:
        """The end of the latest pause (past or to come); 0 when none was set since the log was made or flushed."""
        return max(0, self._paused)

    def release(self, name: Any, at: int, weight: int) -> bool:
        """Remove one entry recorded at ``at`` with ``weight`` and ``name``: a reservation given back."""
        with self._lock:
            ts, cum = self._ts, self._cum
            for i in range(bisect_right(ts, at, self._head) - 1, bisect_left(ts, at, self._head) - 1, -1):
                previous = cum[i - 1] if i > self._head else self._base
                if cum[i] - previous == weight and self._names[i] == name:
                    del ts[i], cum[i], self._names[i]
                    for j in range(i, len(cum)):
                        cum[j] -= weight
                    self._refresh()
                    return True
            return False

    def leak(self, now: int) -> int:
        """Drop entries too old to count at ``now``; return how much weight left."""
        with self._lock:
            before = self._base
            self._trim(now - self._longest)
            return self._base - before

    def count(self) -> int:
        """Units of weight recorded, reservations included."""
        with self._lock:
            return self._total - self._base

    def peek(self, index: int) -> tuple[Any, int] | None:
        """Name and timestamp of the unit ``index`` places from the newest, as if weights were split."""
        with self._lock:
            unit = self._total - index
            if index < 0 or unit <= self._base:
                return None
            i = bisect_left(self._cum, unit, self._head)
            return self._names[i], self._ts[i]

    def flush(self) -> None:
        """Forget everything."""
        with self._lock:
            del self._ts[:], self._cum[:], self._names[:]
            self._head = self._base = 0
            self._floor, self._paused, self._holding = _NO_FLOOR, _NO_PAUSE, False
            self._refresh()

    # -- helpers, called with the lock held --------------------------------------------------

    def _earliest(self, t: int, weight: int) -> tuple[int, Rate | None]:
        """The earliest time ``>= t`` the item fits, and the rate that pushed it past ``t``."""
        at, blocking = t, None
        cum, head, total = self._cum, self._head, self._total
        for limit, stamps, rate in self._rates:
            need = total + weight - limit  # P(s - stamps) must reach this
            if need <= self._base:
                continue
            if weight > limit:
                return NEVER, rate
            fits = self._ts[bisect_left(cum, need, head)] + stamps
            if fits > at:
                at, blocking = fits, rate
        return at, blocking

    def _remaining(self, t: int) -> tuple[tuple[int, ...], int]:
        """Units each rate has left at ``t``, and the first time after ``t`` one of them frees."""
        ts, cum, head, total = self._ts, self._cum, self._head, self._total
        remaining, frees = [], _NEVER_TRIM
        for limit, stamps, _ in self._rates:
            i = bisect_right(ts, t - stamps, head)  # the first entry that counts at t
            before = cum[i - 1] if i > head else self._base
            remaining.append(max(limit - (total - before), 0))
            if total > before:
                frees = min(frees, ts[bisect_right(cum, before, i)] + stamps)
        return tuple(remaining), frees

    def _insert(self, name: Any, at: int, weight: int) -> None:
        """Record an entry in timestamp order: a reservation, or an item from a lagging clock."""
        ts, cum = self._ts, self._cum
        i = bisect_right(ts, at, self._head)
        ts.insert(i, at)
        cum.insert(i, (cum[i - 1] if i > self._head else self._base) + weight)
        self._names.insert(i, name)
        for j in range(i + 1, len(cum)):
            cum[j] += weight
        self._refresh()

    def _trim(self, horizon: int) -> None:
        head = self._head
        if head == len(self._ts) or self._ts[head] > horizon:
            return
        head = bisect_right(self._ts, horizon, head)
        self._base = self._cum[head - 1]
        self._floor = self._ts[head - 1] + self._longest
        if head >= _COMPACT_AT and 2 * head >= len(self._ts):
            del self._ts[:head], self._cum[:head], self._names[:head]
            head = 0
        self._head = head
        self._refresh()

    def _refresh(self) -> None:
        """Re-read the cached ends of the log after a change other than an append."""
        self._blocked = self._seen = None
        self._roomy = -1 if self._holding else self._base + self._room  # a pause: no fast path
        if len(self._ts) > self._head:
            self._total = self._cum[-1]
            self._newest = self._ts[-1]
            self._trim_at = self._ts[self._head] + self._longest
        else:
            self._total = self._base
            self._newest = _EMPTY
            self._trim_at = _NEVER_TRIM
