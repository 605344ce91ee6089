"""What the HTTP-client helpers share: admission, server holds, and ``Retry-After``.

A 429 or 503 with ``Retry-After`` holds its key with ``limiter.pause``: every caller sharing
the limiter's backend (other processes and hosts too) waits it out or is refused, and callers
already waiting for a place move behind it.
"""

from __future__ import annotations

import math
import re
import time
from datetime import timezone
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from .._async.limiter import AsyncLimiter
from .._errors import BucketFullException, LimiterDelayException
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
        return self.args[1]  # type: ignore[no-any-return]

    @property
    def meta_info(self) -> dict[str, Any]:
        """``name``, ``weight``, ``rate`` (``None``), ``max_delay`` and ``actual_delay`` (the hold left, ms)."""
        return {**super().meta_info, "rate": None}

    def __str__(self) -> str:
        return (
            f"The server holds {self.item.name!r} for {self.actual_delay} ms more (Retry-After), "
            f"longer than max_delay={self.max_delay} allows"
        )


def hold(limiter: Limiter, name: str, seconds: float) -> None:
    """Hold ``name`` for ``seconds`` for every caller sharing the limiter's backend (a pause)."""
    limiter.pause(name, seconds * 1000)


async def ahold(limiter: AsyncLimiter, name: str, seconds: float) -> None:
    """``hold`` for the async limiter."""
    await limiter.pause(name, seconds * 1000)


def admit(limiter: Limiter, name: str, weight: int) -> None:
    """Acquire ``name``, waiting within the limiter's ``max_delay`` for room and for any hold on it.

    :raises ServerHoldException: a hold lasts longer than the wait allowed.
    :raises BucketFullException, LimiterDelayException: the limiter refused.
    """
    try:
        limiter.try_acquire(name, weight)
    except (BucketFullException, LimiterDelayException) as refused:
        raise _held(refused, limiter.paused_until(name), limiter.max_delay) from None


async def aadmit(limiter: AsyncLimiter, name: str, weight: int) -> None:
    """``admit`` for the async limiter."""
    try:
        await limiter.try_acquire(name, weight)
    except (BucketFullException, LimiterDelayException) as refused:
        raise _held(refused, await limiter.paused_until(name), limiter.max_delay) from None


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


def may_retry(limiter: Limiter | AsyncLimiter, seconds: float, method: str, replayable: bool) -> bool:
    """Whether a request held ``seconds`` may go again: idempotent, replayable, held within ``max_delay``."""
    max_delay = limiter.max_delay
    return (
        replayable
        and method.upper() in IDEMPOTENT_METHODS
        and max_delay is not None
        and math.ceil(seconds * 1000) <= max_delay
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


def _raising(limiter: _L) -> _L:
    if not limiter.raise_when_fail:
        raise ValueError("limiter must raise on refusal (raise_when_fail=True): a helper has no False to return")
    return limiter


def _held(refused: BucketFullException | LimiterDelayException, paused_until: int, max_delay: Any) -> Exception:
    """The refusal to raise: ``ServerHoldException`` when a server's hold outlasted the wait allowed."""
    item = refused.item
    if paused_until <= item.timestamp:
        return refused  # one of our rates refused it
    return ServerHoldException(item, None, paused_until - item.timestamp, 0 if max_delay is None else int(max_delay))
