"""The promise in real time: no real window of ``I`` ms ever admits more than ``L``, on every backend.

Workers (tasks here, threads in the generated sync twin) hammer one limiter on the monotonic
clock; each call is bracketed by monotonic readings and joined with the stamp the bucket stored
it at, and ``tests/realtime.py`` looks for admissions that overflow one real window. Short by
default; ``PYRATE_REALTIME_LONG=1`` runs each scenario for 5 s at realistic rates.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest

from pyrate_limiter import Rate
from tests.realtime import backend_problems, realtime_problems

from .recording import SPELLINGS, run_bursts, run_workers

if TYPE_CHECKING:
    from collections.abc import Sequence

    from tests.realtime import Call

    from .conftest import AsyncCreateBucket

LONG = os.environ.get("PYRATE_REALTIME_LONG") == "1"
SECONDS = 5.0 if LONG else 0.45  # short: three bursts, four windows
WORKERS = 4
ONE_RATE = [Rate(100, 1000)] if LONG else [Rate(5, 100)]
HEAVY_RATE = [Rate(100, 1000)] if LONG else [Rate(10, 100)]
TWO_RATES = [Rate(100, 1000), Rate(150, 3000)] if LONG else [Rate(5, 100), Rate(8, 300)]


def long_enough(rates: Sequence[Rate]) -> int:
    """A ``max_delay`` no worker's wait reaches: every waiting call is admitted."""
    return 10 * max(rate.interval for rate in rates)


async def assert_no_real_window_overflows(
    create: AsyncCreateBucket, rates: list[Rate], weights: Sequence[int], max_delays: Sequence[int | None]
) -> list[Call]:
    bucket = await create(rates)
    calls, units = await run_workers(bucket, SECONDS, weights, max_delays)
    assert_checks_out(calls, units, rates)
    return calls


def assert_checks_out(calls: list[Call], units: list[tuple[str, int] | None], rates: list[Rate]) -> None:
    problems = realtime_problems(calls, rates)
    problems += backend_problems(calls, units, max(rate.interval for rate in rates))
    assert not problems, "\n".join(problems)
    # The run crossed window boundaries, or it proved nothing.
    assert sum(call.weight for call in calls if call.admitted) > max(rate.limit for rate in rates)


async def test_polling_callers_never_get_more_than_the_limit_into_one_real_window(
    create_atomic_bucket: AsyncCreateBucket,
) -> None:
    calls = await assert_no_real_window_overflows(create_atomic_bucket, ONE_RATE, [1], [None] * WORKERS)
    assert not all(call.admitted for call in calls)  # they did meet a full bucket


async def test_bursts_of_waiting_callers_never_get_more_than_the_limit_into_one_real_window(
    create_atomic_bucket: AsyncCreateBucket,
) -> None:
    bucket = await create_atomic_bucket(ONE_RATE)
    calls, units = await run_bursts(bucket, SECONDS, WORKERS, long_enough(ONE_RATE))
    assert_checks_out(calls, units, ONE_RATE)
    assert any(call.admitted and call.stored != call.decided for call in calls)  # some waited


async def test_mixed_weights_of_pollers_and_waiters_never_overflow_one_real_window(
    create_atomic_bucket: AsyncCreateBucket,
) -> None:
    wait = long_enough(HEAVY_RATE)
    await assert_no_real_window_overflows(create_atomic_bucket, HEAVY_RATE, [1, 2, 3], [None, None, wait, wait])


async def test_every_one_of_two_rates_holds_in_real_time(create_atomic_bucket: AsyncCreateBucket) -> None:
    wait = long_enough(TWO_RATES)
    await assert_no_real_window_overflows(create_atomic_bucket, TWO_RATES, [1], [None, wait, None, wait])


@pytest.mark.parametrize("spelling", SPELLINGS[1:])
async def test_reservations_and_with_acquire_never_overflow_one_real_window(
    create_atomic_bucket: AsyncCreateBucket, spelling: str
) -> None:
    # reserve_cancel gives back every place it would wait for: none may linger as a phantom.
    bucket = await create_atomic_bucket(HEAVY_RATE)
    wait = long_enough(HEAVY_RATE)
    calls, units = await run_workers(bucket, SECONDS, [1, 2], [None, wait, wait, None], spelling)
    assert_checks_out(calls, units, HEAVY_RATE)
    if spelling == "reserve_cancel":
        assert any(call.cancelled for call in calls)
