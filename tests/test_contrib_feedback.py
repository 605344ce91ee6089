"""What every HTTP helper shares: Retry-After parsing, the per-limiter hold, admission through it,
the limiter each helper takes, and a core that never imports a client library."""

from __future__ import annotations

import subprocess
import sys
import time
from email.utils import formatdate

import anyio
import pytest

from pyrate_limiter import AsyncLimiter, BucketFullException, Limiter, LimiterDelayException, Rate
from pyrate_limiter.contrib import ServerHoldException, parse_retry_after
from pyrate_limiter.contrib._feedback import aadmit, admit, ahold, hold, hold_from
from pyrate_limiter.contrib.aiohttp import LimiterMiddleware
from pyrate_limiter.contrib.asgi import RateLimitMiddleware
from pyrate_limiter.contrib.httpx import AsyncLimiterTransport, LimiterTransport
from pyrate_limiter.contrib.requests import LimiterAdapter
from tests.fresh_env import ROOT

NOW = 1_700_000_000.0  # a fixed wall-clock time for dates


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("0", 0.0),
        ("1.5", 1.5),  # not RFC 9110, but unambiguous
        (formatdate(NOW + 30, usegmt=True), 30.0),  # IMF-fixdate
        ("Tue, 14 Nov 2023 22:13:20 GMT", 0.0),  # NOW itself: a date that has come gives no wait
        ("Tuesday, 14-Nov-23 22:14:20 GMT", 60.0),  # RFC 850
        ("Tue Nov 14 22:15:20 2023", 120.0),  # asctime, no zone: GMT
        (formatdate(NOW - 3600, usegmt=True), 0.0),  # in the past
    ],
)
def test_retry_after_reads_delay_seconds_and_http_dates(value: str, seconds: float) -> None:
    assert parse_retry_after(value, now=NOW) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value",
    [None, "", "soon", "-5", "-0.5", "5s", "1e3", "0x10", "inf", "nan", "9" * 400, "٣", "5, 6", "2023-11-14"],
)
def test_retry_after_garbage_and_negative_numbers_say_nothing(value: str | None) -> None:
    assert parse_retry_after(value, now=NOW) is None


def test_retry_after_dates_count_from_the_wall_clock_by_default() -> None:
    seconds = parse_retry_after(formatdate(time.time() + 100, usegmt=True))
    assert seconds is not None
    assert 98 < seconds <= 100


@pytest.mark.parametrize(
    ("status", "retry_after", "hold"),
    [(429, "2", 2.0), (503, "3", 3.0), (429, None, None), (429, "0", None), (429, "later", None), (500, "2", None)],
)
def test_only_a_429_or_503_with_a_positive_retry_after_holds(status: int, retry_after: str | None, hold: float) -> None:
    assert hold_from(status, retry_after) == hold


def test_a_hold_is_a_pause_of_the_limiter_per_name_keeping_the_longest() -> None:
    with Limiter(Rate(5, 1000)) as one, Limiter(Rate(5, 1000)) as other:
        started = time.time_ns() // 1_000_000
        hold(one, "a", 60)
        hold(one, "a", 1)  # a shorter hold never cuts a longer one
        assert started + 60_000 <= one.paused_until("a") <= time.time_ns() // 1_000_000 + 60_000
        assert other.paused_until("a") == 0


def test_a_hold_longer_than_max_delay_refuses_at_once_and_takes_no_place() -> None:
    with Limiter(Rate(1, 60_000), max_delay=500) as limiter:
        hold(limiter, "api", 30)
        started = time.monotonic()
        with pytest.raises(ServerHoldException) as refused:
            admit(limiter, "api", 1)
        assert time.monotonic() - started < 0.4  # refused without waiting for any of the 500 ms
        assert isinstance(refused.value, LimiterDelayException)
        info = refused.value.meta_info
        assert info["rate"] is None
        assert info["name"] == "api"
        assert 29_000 < info["actual_delay"] <= 30_000
        assert info["max_delay"] <= 500
        assert "Retry-After" in str(refused.value)
        assert limiter.state("api").rates[0].used == 0  # the only place is still free


def test_a_limiter_that_never_waits_refuses_any_hold() -> None:
    with Limiter(Rate(5, 1000)) as limiter:
        hold(limiter, "api", 0.5)
        with pytest.raises(ServerHoldException) as refused:
            admit(limiter, "api", 1)
        assert refused.value.max_delay == 0


def test_a_hold_within_max_delay_is_waited_out_then_the_limiter_decides() -> None:
    with Limiter(Rate(1, 60_000), max_delay=1000) as limiter:
        hold(limiter, "api", 0.1)
        end = limiter.paused_until("api")
        admit(limiter, "api", 1)
        assert time.time_ns() // 1_000_000 >= end
        with pytest.raises(LimiterDelayException) as own:  # the limiter's own refusal, its own exception
            admit(limiter, "api", 1)
        assert not isinstance(own.value, ServerHoldException)
        with pytest.raises(BucketFullException):
            admit(limiter, "api", 2)


async def test_async_admission_waits_out_a_hold_and_refuses_a_longer_one() -> None:
    async with AsyncLimiter(Rate(2, 60_000), max_delay=1000) as limiter:
        await ahold(limiter, "api", 0.1)
        end = await limiter.paused_until("api")
        await aadmit(limiter, "api", 1)
        assert time.time_ns() // 1_000_000 >= end
        await ahold(limiter, "api", 5)
        with pytest.raises(ServerHoldException):
            await aadmit(limiter, "api", 1)
        assert (await limiter.state("api")).rates[0].used == 1


async def test_a_hold_that_begins_while_waiting_for_room_is_waited_out_too() -> None:
    async with AsyncLimiter(Rate(1, 100), max_delay=2000) as limiter:
        assert await limiter.try_acquire("api")
        ends: list[int] = []

        async def server_says_wait() -> None:
            await anyio.sleep(0.05)  # while the admission below waits ~100 ms for room
            await ahold(limiter, "api", 0.2)
            ends.append(await limiter.paused_until("api"))

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(server_says_wait)
            await aadmit(limiter, "api", 1)
            admitted = time.time_ns() // 1_000_000
        assert admitted >= ends[0]


def test_each_helper_takes_its_own_variant_of_limiter_and_one_that_raises() -> None:
    async_limiter = AsyncLimiter(Rate(5, 1000))
    with Limiter(Rate(5, 1000)) as sync_limiter, Limiter(Rate(5, 1000), raise_when_fail=False) as quiet:
        for sync_helper in (LimiterTransport, LimiterAdapter):
            with pytest.raises(TypeError, match="sync Limiter"):
                sync_helper(async_limiter)  # type: ignore[arg-type]
            with pytest.raises(ValueError, match="raise_when_fail"):
                sync_helper(quiet)
        for async_helper in (AsyncLimiterTransport, LimiterMiddleware):
            with pytest.raises(TypeError, match="AsyncLimiter"):
                async_helper(sync_limiter)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="AsyncLimiter"):
            RateLimitMiddleware(_app, sync_limiter)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="raise_when_fail"):
            RateLimitMiddleware(_app, AsyncLimiter(Rate(5, 1000), raise_when_fail=False))


def test_the_core_and_contrib_package_import_no_http_library() -> None:
    check = (
        "import sys, pyrate_limiter, pyrate_limiter.contrib, pyrate_limiter.contrib.asgi\n"
        "print(sorted({'httpx', 'requests', 'aiohttp', 'starlette', 'uvicorn'} & set(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", check], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


async def _app(scope: object, receive: object, send: object) -> None:
    raise AssertionError("never called")
