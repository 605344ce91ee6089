"""The real-time checker itself, on hand-made records: it passes what a closed window allows and
fails what a window that frees its room one stamp early lets through."""

from __future__ import annotations

import pytest

from pyrate_limiter import Rate
from tests.realtime import NS_PER_MS, Call, backend_problems, earliest_fit, over_admissions, realtime_problems

RATE = Rate(2, 100)
S = 1_000  # a stamp, ms


def ns(ms: float) -> int:
    return round(ms * NS_PER_MS)


def admitted(name: str, stored: int, before: float, after: float, weight: int = 1, decided: int | None = None) -> Call:
    """An admitted call stored at ``stored`` ms, bracketed by ``before`` and ``after`` (ms)."""
    return Call(name, weight, ns(before), ns(after), True, stored if decided is None else decided, stored)


def refused(name: str, decided: int, weight: int = 1) -> Call:
    return Call(name, weight, ns(decided + 0.1), ns(decided + 0.2), False, decided, None)


# Two admitted late in stamp S; the closed window frees their room at S + 101.
FULL = [admitted("a", S, S + 0.5, S + 0.6), admitted("b", S, S + 0.7, S + 0.8)]


def test_checker_passes_what_a_closed_window_allows() -> None:
    calls = [*FULL, admitted("c", S + 101, S + 101.0, S + 101.1), admitted("d", S + 101, S + 101.2, S + 101.3)]
    assert realtime_problems(calls, [RATE]) == []


def test_checker_fails_an_admission_one_stamp_early() -> None:
    # What a half-open window does: "c" counts "a" and "b" out at S + 100 and gets in early in that ms.
    calls = [*FULL, admitted("c", S + 100, S + 100.0, S + 100.3)]
    problems = realtime_problems(calls, [RATE])
    assert len(problems) == 1
    assert "3 units > limit 2 inside 99.800 real ms" in problems[0]
    assert "a(w1@1000), b(w1@1000), c(w1@1100)" in problems[0]


def test_checker_counts_a_set_exactly_one_interval_wide() -> None:
    exactly = [*FULL, admitted("c", S + 100, S + 100.0, S + 100.5)]  # after - lower(a) == 100 ms
    assert over_admissions(exactly, RATE.limit, RATE.interval)
    just_wider = [*FULL, Call("c", 1, ns(S + 100), ns(S + 100.5) + 1, True, S + 100, S + 100)]
    assert over_admissions(just_wider, RATE.limit, RATE.interval) == []


def test_checker_bounds_a_waiter_by_its_stored_stamp_not_by_its_start() -> None:
    # "c" started long before (it waited), so only its stored stamp tells when it can have got in:
    # bracketed by its call alone it would seem to fit among "a" and "b".
    waited = [*FULL, admitted("c", S + 101, S + 0.1, S + 101.2, decided=S)]
    assert realtime_problems(waited, [RATE]) == []
    early = [*FULL, admitted("c", S + 100, S + 0.1, S + 100.2, decided=S)]
    assert realtime_problems(early, [RATE])


def test_checker_counts_weights() -> None:
    heavy = [admitted("a", S, S + 0.5, S + 0.6, weight=2), admitted("b", S + 100, S + 100.0, S + 100.1)]
    assert realtime_problems(heavy, [RATE])
    assert realtime_problems(heavy, [Rate(3, 100)]) == []


def test_checker_checks_every_rate() -> None:
    # Within 2 per 100 ms, but 5 inside 300 real ms.
    calls = [admitted(f"c{i}", S + 101 * i, S + 101 * i + 0.5, S + 101 * i + 0.6) for i in range(3)]
    calls += [admitted(f"d{i}", S + 101 * i, S + 101 * i + 0.7, S + 101 * i + 0.8) for i in range(2)]
    assert realtime_problems(calls, [RATE]) == []
    problems = realtime_problems(calls, [RATE, Rate(4, 300)])
    assert problems
    assert all("under 4/300 ms" in problem for problem in problems)


def test_checker_fails_a_waiter_that_returned_before_its_stored_stamp() -> None:
    calls = [admitted("w", S + 101, S + 0.1, S + 100.9, decided=S)]
    assert realtime_problems(calls, [RATE]) == [
        f"empty bracket: w returned at {ns(S + 100.9)} ns, before its stored stamp {S + 101} ms"
    ]


def test_checker_fails_records_the_bucket_contradicts() -> None:
    calls = [Call("ghost", 1, ns(S), ns(S + 0.1), True, S, None), Call("kept", 1, ns(S), ns(S + 0.1), False, S, S)]
    problems = realtime_problems(calls, [RATE])
    assert problems == [
        "record mismatch: ghost was admitted but the bucket never recorded it",
        "record mismatch: kept was refused but the bucket recorded it at 1000",
    ]


def test_checker_shows_a_few_problems_and_counts_the_rest() -> None:
    calls = [Call(f"g{i}", 1, ns(S), ns(S + 0.1), True, S, None) for i in range(8)]
    problems = realtime_problems(calls, [RATE])
    assert len(problems) == 6
    assert problems[-1] == "record mismatch: ... 3 more"


# -- what the backend holds afterwards ---------------------------------------------------------

CALLS = [
    admitted("old", S, S + 0.1, S + 0.2),  # before the last decision's window: may be trimmed
    admitted("heavy", S + 150, S + 150.1, S + 150.2, weight=2),
    refused("no", S + 160),
    admitted("last", S + 200, S + 200.1, S + 200.2),
]
HELD = [("last", S + 200), ("heavy", S + 150), ("heavy", S + 150)]  # newest first


def test_backend_check_passes_exactly_what_was_admitted() -> None:
    assert backend_problems(CALLS, HELD, longest=100) == []
    assert backend_problems(CALLS, [*HELD, ("old", S)], longest=100) == []


def test_backend_check_fails_a_refused_or_unknown_item_held() -> None:
    assert backend_problems(CALLS, [*HELD, ("no", S + 160)], longest=100) == [
        "backend: unit 3 is 'no' at 1160, a refused call"
    ]
    assert backend_problems(CALLS, [*HELD, ("who", S + 160)], longest=100) == [
        "backend: unit 3 is 'who' at 1160: no such call"
    ]


def test_backend_check_fails_an_item_held_at_another_stamp() -> None:
    assert backend_problems(CALLS, [("last", S + 199), *HELD[1:]], longest=100) == [
        "backend: unit 0 is 'last' at 1199, but it was stored at 1200"
    ]


def test_backend_check_fails_an_item_held_in_part_or_twice() -> None:
    assert backend_problems(CALLS, HELD[:2], longest=100) == ["backend: 'heavy' holds 1 units, its weight is 2"]
    assert backend_problems(CALLS, [*HELD, ("last", S + 200)], longest=100) == [
        "backend: 'last' holds 2 units, its weight is 1"
    ]


def test_backend_check_fails_an_item_the_last_decision_still_counted_gone() -> None:
    # "heavy" is 50 ms before the last decision: no trim may have dropped it yet; nor at 100 ms.
    assert backend_problems(CALLS, HELD[:1], longest=100) == [
        f"backend: 'heavy' stored at {S + 150} is missing (still counts at {S + 200})"
    ]
    assert backend_problems(CALLS, HELD, longest=200) == [
        f"backend: 'old' stored at {S} is missing (still counts at {S + 200})"
    ]


def test_backend_check_fails_a_unit_peek_cannot_show() -> None:
    assert backend_problems(CALLS, [*HELD, None], longest=100) == ["backend: peek(3) is None though count() is 4"]


# -- where the closed rule puts a waiter (the storm test's yardstick) --------------------------


def test_earliest_fit_keeps_an_item_counting_through_its_stamp_plus_the_interval() -> None:
    assert earliest_fit([], [RATE], S, 2) == S
    assert earliest_fit([(S, 1)], [RATE], S, 1) == S
    assert earliest_fit([(S, 1), (S + 10, 1)], [RATE], S + 20, 1) == S + 101
    assert earliest_fit([(S, 2)], [RATE], S + 20, 2) == S + 101


def test_earliest_fit_queues_behind_reservations_and_checks_every_rate() -> None:
    queued = [(S, 1), (S, 1), (S + 101, 1), (S + 101, 1)]
    assert earliest_fit(queued, [RATE], S + 5, 1) == S + 202
    assert earliest_fit([(S, 1), (S + 101, 1)], [RATE, Rate(3, 300)], S + 150, 2) == S + 301
    with pytest.raises(ValueError, match="never fits"):
        earliest_fit([], [RATE], S, 3)
