"""What the HTTP-client helpers share: admission through server holds, and ``Retry-After``.

A 429 or 503 with ``Retry-After`` holds its key for every helper over the same limiter: the
hold lives in a small map attached to the limiter, consulted before and after each acquire.
"""

from __future__ import annotations

import math
import re
import threading
import time
import weakref
from datetime import timezone
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from .._async.limiter import AsyncLimiter
from .._concurrency import asleep, sleep
from .._errors import LimiterDelayException
from .._rate import RateItem
from .._sync.limiter import Limiter

if TYPE_CHECKING:
    from .._rate import Rate

#: What a key function returns: the limiter's name for a request, or ``(name, weight)``.
Key: TypeAlias = "str | tuple[str, int]"

#: Statuses whose ``Retry-After`` holds the key.
HOLD_STATUSES = frozenset({429, 503})
#: Methods a helper retries (once) after a hold when asked to.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})

_DELAY_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?")  # RFC 9110 says digits; "1.5" is read as meant


class ServerHoldException(LimiterDelayException):
    """The server asked for a longer pause (``Retry-After``) than the limiter's ``max_delay`` allows.

    ``ServerHoldException(item, None, hold_ms, max_delay)``: a ``LimiterDelayException`` whose
    ``actual_delay`` is the hold left (ms) and whose ``rate`` is ``None``, since the server
    refused, not one of our rates.
    """

    @property
    def rate(self) -> Rate | None:  # type: ignore[override]  # None: no rate of ours refused
        return self.args[1]

    @property
    def meta_info(self) -> dict[str, Any]:
        """``name``, ``weight``, ``rate`` (``None``), ``max_delay`` and ``actual_delay`` (the hold left, ms)."""
        return {**super().meta_info, "rate": None}

    def __str__(self) -> str:
        return (
            f"The server holds {self.item.name!r} for {self.actual_delay} ms more (Retry-After), "
            f"longer than max_delay={self.max_delay} allows"
        )


class Holds:
    """Per name, the monotonic time until which the server asked us to send nothing.

    Thread-safe under its lock, and task-safe: no method awaits, so no task switch happens
    while the lock is held.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._until: dict[str, float] = {}

    def hold(self, name: str, seconds: float) -> None:
        """Send nothing under ``name`` for ``seconds`` from now; a longer hold already there stays."""
        until = time.monotonic() + seconds
        with self._lock:
            if until > self._until.get(name, -math.inf):
                self._until[name] = until

    def remaining(self, name: str) -> float:
        """Seconds left on ``name``'s hold; ``0.0`` when there is none."""
        with self._lock:
            until = self._until.get(name)
            if until is None:
                return 0.0
            left = until - time.monotonic()
            if left > 0:
                return left
            del self._until[name]
            return 0.0


def holds_for(limiter: Limiter | AsyncLimiter) -> Holds:
    """The holds every helper over ``limiter`` shares (made on first use, gone with the limiter)."""
    with _HOLDS_LOCK:
        holds = _HOLDS.get(limiter)
        if holds is None:
            holds = _HOLDS[limiter] = Holds()
        return holds


def hold(limiter: Limiter, holds: Holds, name: str, seconds: float) -> None:
    """Hold ``name`` for ``seconds`` for every caller of ``limiter`` (sync helpers record here)."""
    # The one line to change once the limiter has pause(name, ms): limiter.pause(name, ceil(seconds * 1000)).
    # Holds then stay empty, so the checks in admit() fall through and the limiter itself makes callers wait.
    holds.hold(name, seconds)


async def ahold(limiter: AsyncLimiter, holds: Holds, name: str, seconds: float) -> None:
    """Hold ``name`` for ``seconds`` for every caller of ``limiter`` (async helpers record here)."""
    # As in hold(): once there is pause(name, ms), this line becomes await limiter.pause(name, ms).
    holds.hold(name, seconds)


def admit(limiter: Limiter, holds: Holds, name: str, weight: int) -> None:
    """Acquire ``name`` when no hold is on it, waiting for both within the limiter's ``max_delay``.

    :raises ServerHoldException: the hold lasts longer than the wait allowed.
    :raises BucketFullException, LimiterDelayException: the limiter refused.
    """
    started = time.monotonic()
    while True:
        wait = _hold_wait(limiter.max_delay, holds, name, weight, started)
        if wait:
            sleep(wait)
        limiter.try_acquire(name, weight, max_delay=_budget_left(limiter.max_delay, started))
        # A hold that began while we waited for room spends the place we got: take a new one after it.
        if not holds.remaining(name):
            return


async def aadmit(limiter: AsyncLimiter, holds: Holds, name: str, weight: int) -> None:
    """``admit`` for the async limiter: the same waits, slept on the event loop."""
    started = time.monotonic()
    while True:
        wait = _hold_wait(limiter.max_delay, holds, name, weight, started)
        if wait:
            await asleep(wait)
        await limiter.try_acquire(name, weight, max_delay=_budget_left(limiter.max_delay, started))
        if not holds.remaining(name):
            return


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """The seconds a ``Retry-After`` value asks to wait, or ``None`` when it says nothing usable.

    :param value: delay-seconds (``"120"``) or an HTTP date (``"Wed, 21 Oct 2015 07:28:00 GMT"``,
        also the RFC 850 and asctime forms); anything else, negative numbers included, is ``None``.
    :param now: the wall-clock time (``time.time()``) a date is measured from; a past date gives 0.0.
    """
    if value is None:
        return None
    value = value.strip()
    if _DELAY_SECONDS.fullmatch(value):
        seconds = float(value)
        return seconds if math.isfinite(seconds) else None
    try:
        date = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if date.tzinfo is None:  # asctime dates and "-0000" carry no zone: HTTP dates are GMT
        date = date.replace(tzinfo=timezone.utc)
    return max(0.0, date.timestamp() - (time.time() if now is None else now))


def hold_from(status: int, retry_after: str | None) -> float | None:
    """The hold (seconds) a response asks for: a positive ``Retry-After`` on a 429 or 503, else ``None``."""
    if status not in HOLD_STATUSES:
        return None
    return parse_retry_after(retry_after) or None


def may_retry(limiter: Limiter | AsyncLimiter, holds: Holds, name: str, method: str, replayable: bool) -> bool:
    """Whether a held request may go again: idempotent, its body replayable, its hold within ``max_delay``."""
    max_delay = limiter.max_delay
    return (
        replayable
        and method.upper() in IDEMPOTENT_METHODS
        and max_delay is not None
        and math.ceil(holds.remaining(name) * 1000) <= max_delay
    )


def split_key(key: Key) -> tuple[str, int]:
    """``(name, weight)`` from what a key function returned."""
    return key if isinstance(key, tuple) else (key, 1)


def sync_limiter(limiter: object) -> Limiter:
    """``limiter`` if a sync helper can use it; ``TypeError`` / ``ValueError`` naming why not."""
    if not isinstance(limiter, Limiter):
        raise TypeError(f"limiter must be a sync Limiter (AsyncLimiter is for the async helpers), got {limiter!r}")
    return _raising(limiter)


def async_limiter(limiter: object) -> AsyncLimiter:
    """``limiter`` if an async helper can use it; ``TypeError`` / ``ValueError`` naming why not."""
    if not isinstance(limiter, AsyncLimiter):
        raise TypeError(f"limiter must be an AsyncLimiter (Limiter is for the sync helpers), got {limiter!r}")
    return _raising(limiter)


_L = TypeVar("_L", Limiter, AsyncLimiter)
_HOLDS: weakref.WeakKeyDictionary[Any, Holds] = weakref.WeakKeyDictionary()
_HOLDS_LOCK = threading.Lock()


def _raising(limiter: _L) -> _L:
    if not limiter.raise_when_fail:
        raise ValueError("limiter must raise on refusal (raise_when_fail=True): a helper has no False to return")
    return limiter


def _budget_left(max_delay: float | None, started: float) -> int | None:
    """What is left (ms) of ``max_delay`` since ``started``; ``None`` when the limiter never waits."""
    if max_delay is None:
        return None
    return max(0, int(max_delay) - int((time.monotonic() - started) * 1000))


def _hold_wait(max_delay: float | None, holds: Holds, name: str, weight: int, started: float) -> float:
    """Seconds to wait for ``name``'s hold to end (0.0 if none); raises if that overruns the budget."""
    left = holds.remaining(name)
    if left:
        budget = _budget_left(max_delay, started)
        hold_ms = math.ceil(left * 1000)
        if budget is None or hold_ms > budget:
            item = RateItem(name, int(time.time() * 1000), weight)
            raise ServerHoldException(item, None, hold_ms, 0 if budget is None else budget)
    return left
