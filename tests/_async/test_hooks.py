"""What a limiter tells: hooks on each admission, wait, refusal and backend error, and its log lines."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import pytest

from pyrate_limiter import AsyncLimiter, LimiterHooks, Rate

from ..fake_clock import T0, FakeClock

if TYPE_CHECKING:
    from pyrate_limiter import BackendError

    from .conftest import AsyncCreateBucket


class Heard(LimiterHooks):
    """Every event, in order, as ``(event, name, weight, detail)``."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, int, Any]] = []

    def admitted(self, name: str, weight: int, delay_ms: int) -> None:
        self.events.append(("admitted", name, weight, delay_ms))

    def waiting(self, name: str, weight: int, delay_ms: int) -> None:
        self.events.append(("waiting", name, weight, delay_ms))

    def refused(self, name: str, weight: int, rate: Rate, delay_ms: int | None) -> None:
        self.events.append(("refused", name, weight, (rate, delay_ms)))

    def backend_error(self, name: str, weight: int, error: BackendError, policy: str) -> None:
        self.events.append(("backend_error", name, weight, policy))


class Broken(LimiterHooks):
    def admitted(self, name: str, weight: int, delay_ms: int) -> None:
        raise RuntimeError("a hook's own bug")


async def test_hooks_hear_every_admission_wait_and_refusal(create_atomic_bucket: AsyncCreateBucket) -> None:
    rate = Rate(2, 20)
    heard = Heard()
    limiter = AsyncLimiter(await create_atomic_bucket([rate]), clock=FakeClock(T0), max_delay=100, hooks=[heard])
    assert await limiter.try_acquire("a", weight=2)
    assert await limiter.try_acquire("b")  # waits 21 ms of real time
    limiter.raise_when_fail = False
    assert not await limiter.try_acquire("c", weight=3)
    assert not await limiter.try_acquire("d", max_delay=10)
    assert heard.events == [
        ("admitted", "a", 2, 0),
        ("waiting", "b", 1, 21),
        ("admitted", "b", 1, 21),
        ("refused", "c", 3, (rate, None)),  # never fits
        ("refused", "d", 1, (rate, 21)),
    ]


async def test_a_failing_hook_is_logged_and_the_acquire_stands(caplog: pytest.LogCaptureFixture) -> None:
    limiter = AsyncLimiter(Rate(1, 1000), clock=FakeClock(T0), hooks=[Broken()])
    with caplog.at_level(logging.WARNING, logger="pyrate_limiter"):
        assert await limiter.try_acquire("k")
    assert any("failed" in record.getMessage() and record.exc_info for record in caplog.records)
    (bucket,) = limiter.buckets()
    assert await bucket.count() == 1


async def test_refusals_and_waits_log_at_debug_and_nothing_louder(caplog: pytest.LogCaptureFixture) -> None:
    limiter = AsyncLimiter(Rate(1, 10), clock=FakeClock(T0), max_delay=50, raise_when_fail=False)
    with caplog.at_level(logging.DEBUG, logger="pyrate_limiter"):
        assert await limiter.try_acquire("k")
        assert await limiter.try_acquire("k")  # waits 11 ms
        assert not await limiter.try_acquire("k", weight=2)
    messages = [(record.levelno, record.getMessage()) for record in caplog.records if record.name == "pyrate_limiter"]
    assert messages == [
        (logging.DEBUG, "waiting 11 ms for room: name='k' weight=1"),
        (logging.DEBUG, "refused by limit=1/10ms: name='k' weight=2 wait needed=None"),
    ]


async def test_bad_policy_and_hooks_are_refused_at_construction() -> None:
    policy: Any = "maybe"
    with pytest.raises(ValueError, match="on_backend_error must be one of 'raise', 'allow', 'deny'"):
        AsyncLimiter(Rate(1, 1000), on_backend_error=policy)
    not_a_hook: Any = object()
    with pytest.raises(TypeError, match="a hook must be a LimiterHooks"):
        AsyncLimiter(Rate(1, 1000), hooks=[not_a_hook])
