"""The real-time checker: did a limiter ever let more than a rate allows into one real window?

Each call is bracketed by two readings of ``time.monotonic_ns()``, taken just before it and just
after it returned; the bucket's stored stamp (integer ms of the same clock) bounds it from below.
An admission certainly happened inside ``[max(before, stored ms), after]``, so a set of admissions
heavier than ``L`` whose brackets all fit in ``I`` real ms is an over-admission, with no tolerance
and whatever rule the code applied to its stamps. The functions here are plain functions over
recorded data, shared by every scenario (tasks, threads, processes) and proven able to fail in
``tests/test_realtime_checker.py``.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from pyrate_limiter import Rate

NS_PER_MS = 1_000_000
SHOWN = 5  # problems of one kind spelled out; the rest are counted


@dataclass(frozen=True, slots=True)
class Call:
    """One ``try_acquire`` as the caller and the bucket saw it.

    :param before: ``time.monotonic_ns()`` just before the call.
    :param after: ``time.monotonic_ns()`` just after it returned (or was cancelled).
    :param admitted: the call returned ``True``.
    :param cancelled: the call was cancelled while it waited: it must have given its place back.
    :param decided: the time (ms) the bucket decided the item at, as its verdict says; ``None``
        if the bucket never decided it.
    :param stored: the stamp (ms) the bucket recorded the item at, as its verdict says;
        ``None`` if it recorded nothing.
    """

    name: str
    weight: int
    before: int
    after: int
    admitted: bool
    decided: int | None
    stored: int | None
    cancelled: bool = False

    @property
    def lower(self) -> int:
        """The earliest real time (ns) the admission can have happened at."""
        assert self.stored is not None, f"{self.name} has no stored stamp"
        return max(self.before, self.stored * NS_PER_MS)


def realtime_problems(calls: Sequence[Call], rates: Sequence[Rate]) -> list[str]:
    """Everything wrong with the calls in real time: records that disagree, empty brackets,
    and, for every rate, sets of admissions that overflow one real window."""
    problems = mismatched_records(calls) + empty_brackets(calls)
    if problems:  # a bracket with no stored stamp cannot be placed
        return problems
    for rate in rates:
        problems += over_admissions(calls, rate.limit, rate.interval)
    return problems


def mismatched_records(calls: Iterable[Call]) -> list[str]:
    """Calls whose outcome disagrees with what the bucket said it recorded."""
    found = []
    for call in calls:
        if call.admitted and call.stored is None:
            found.append(f"{call.name} was admitted but the bucket never recorded it")
        elif not call.admitted and not call.cancelled and call.stored is not None:
            found.append(f"{call.name} was refused but the bucket recorded it at {call.stored}")
    return _shown("record mismatch", found)


def empty_brackets(calls: Iterable[Call]) -> list[str]:
    """Admitted calls that returned before the stamp they were stored at: they did not wait."""
    found = [
        f"{call.name} returned at {call.after} ns, before its stored stamp {call.stored} ms"
        for call in calls
        if call.admitted and call.stored is not None and call.after < call.stored * NS_PER_MS
    ]
    return _shown("empty bracket", found)


def over_admissions(calls: Iterable[Call], limit: int, interval: int) -> list[str]:
    """Sets of admissions heavier than ``limit`` whose brackets fit in one real ``interval`` (ms).

    Each admission in turn is taken as the set's earliest lower bound; the heaviest set starting
    there holds every admission that bracket-wise lies inside ``[lower, lower + interval]``.
    """
    admitted = sorted((call for call in calls if call.admitted), key=lambda call: call.lower)
    lowers = [call.lower for call in admitted]
    window = interval * NS_PER_MS
    found = []
    for first in admitted:
        end = first.lower + window
        candidates = admitted[bisect_left(lowers, first.lower) : bisect_right(lowers, end)]
        inside = [call for call in candidates if call.after <= end]
        weight = sum(call.weight for call in inside)
        if weight > limit:
            last = max(call.after for call in inside)
            names = ", ".join(f"{call.name}(w{call.weight}@{call.stored})" for call in inside)
            found.append(
                f"{weight} units > limit {limit} inside {(last - first.lower) / NS_PER_MS:.3f} real ms "
                f"<= {interval} ms, from {first.lower} ns: {names}"
            )
    return _shown(f"over-admission under {limit}/{interval} ms", found)


def backend_problems(
    calls: Sequence[Call], units: Sequence[tuple[str, int] | None], longest: int, latest: int | None = None
) -> list[str]:
    """Whether the bucket holds exactly what was admitted, as ``peek`` shows it unit by unit.

    Every unit belongs to an admitted call, at the stamp it was stored at, and every stored item
    is whole (as many units as its weight). An admitted item stored at or after ``latest -
    longest`` is one the latest decision still counted (the window is closed), so it cannot
    have been trimmed: it must be there.

    :param longest: the bucket's longest interval (ms).
    :param latest: the newest stamp (ms) anything may have trimmed at; by default the newest
        stamp any call was decided at.
    """
    by_name = {call.name: call for call in calls}
    found = []
    held: Counter[str] = Counter()
    for index, unit in enumerate(units):
        if unit is None:
            found.append(f"peek({index}) is None though count() is {len(units)}")
            continue
        name, stamp = unit
        call = by_name.get(name)
        if call is None:
            found.append(f"unit {index} is {name!r} at {stamp}: no such call")
        elif not call.admitted:
            outcome = "cancelled" if call.cancelled else "refused"
            found.append(f"unit {index} is {name!r} at {stamp}, a {outcome} call")
        elif stamp != call.stored:
            found.append(f"unit {index} is {name!r} at {stamp}, but it was stored at {call.stored}")
        held[name] += 1
    for name, count in held.items():
        call = by_name.get(name)
        if call is not None and count != call.weight:
            found.append(f"{name!r} holds {count} units, its weight is {call.weight}")
    if latest is None:
        latest = max((call.decided for call in calls if call.decided is not None), default=None)
    if latest is not None:
        for call in calls:
            if call.admitted and call.stored is not None and call.stored >= latest - longest and not held[call.name]:
                found.append(f"{call.name!r} stored at {call.stored} is missing (still counts at {latest})")
    return _shown("backend", found)


def earliest_fit(held: Iterable[tuple[int, int]], rates: Sequence[Rate], t: int, weight: int) -> int:
    """The earliest stamp ``>= t`` at which the closed-window rule admits ``weight`` among ``held``.

    ``held`` are ``(stamp, weight)`` of the recorded items. An item fits at ``s`` when, for every
    rate ``(L, I)``, the weight stamped at or after ``s - I`` (later reservations included: they
    queue first) plus its own is at most ``L``. Used to check where a bucket put a waiter, never
    to check the window promise itself (that is ``over_admissions``, in real time).
    """
    if any(weight > rate.limit for rate in rates):
        raise ValueError(f"weight {weight} never fits under {list(rates)}")
    items = sorted(held)
    stamps = [stamp for stamp, _ in items]
    from_here = [0] * (len(items) + 1)  # weight stamped at or after items[i]
    for i in range(len(items) - 1, -1, -1):
        from_here[i] = from_here[i + 1] + items[i][1]

    def fits(at: int) -> bool:
        return all(from_here[bisect_left(stamps, at - rate.interval)] + weight <= rate.limit for rate in rates)

    # Room only frees where a window's start passes an item: at stamp + I + 1.
    moments = {t} | {stamp + rate.interval + 1 for stamp in stamps for rate in rates}
    return next(at for at in sorted(moments) if at >= t and fits(at))


def _shown(kind: str, found: list[str]) -> list[str]:
    if len(found) <= SHOWN:
        return [f"{kind}: {problem}" for problem in found]
    return [f"{kind}: {problem}" for problem in found[:SHOWN]] + [f"{kind}: ... {len(found) - SHOWN} more"]
