"""What a limiter tells about its decisions: the hooks users attach, and its log lines.

Both variants call the same plain functions here: a hook is called inline, never awaited, so
it costs the same in a thread and on an event loop. Nothing here runs on an admission made at
once unless a hook is attached or the backend is failing.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from collections.abc import Iterable

    from ._errors import BackendError
    from ._rate import Rate, RateItem

logger = logging.getLogger("pyrate_limiter")

OnBackendError = Literal["raise", "allow", "deny"]
POLICIES: tuple[OnBackendError, ...] = ("raise", "allow", "deny")


class LimiterHooks:
    """Subclass and override what you want to hear of; attach with ``Limiter(..., hooks=[...])``.

    Hooks run inline in the acquiring thread or task: keep them quick. One that raises is logged
    and skipped, never turned into a failed acquire (the item is already recorded by then).
    """

    def admitted(self, name: str, weight: int, delay_ms: int) -> None:
        """An item was admitted, after waiting ``delay_ms`` (0: at once)."""

    def waiting(self, name: str, weight: int, delay_ms: int) -> None:
        """An item's place was reserved ``delay_ms`` ahead; the caller sleeps until then."""

    def refused(self, name: str, weight: int, rate: Rate, delay_ms: int | None) -> None:
        """An item was refused by ``rate``; it would have fitted after ``delay_ms`` (``None``: never)."""

    def backend_error(self, name: str, weight: int, error: BackendError, policy: OnBackendError) -> None:
        """The backend failed to decide; the limiter then raised, admitted or refused, as ``policy`` says."""


def check_policy(policy: str) -> OnBackendError:
    if policy not in POLICIES:
        raise ValueError(f"on_backend_error must be one of {', '.join(map(repr, POLICIES))}, got {policy!r}")
    return policy


def check_hooks(hooks: Iterable[LimiterHooks]) -> tuple[LimiterHooks, ...]:
    found = tuple(hooks)
    for hook in found:
        if not isinstance(hook, LimiterHooks):
            raise TypeError(f"a hook must be a LimiterHooks (subclass it), got {hook!r}")
    return found


def admitted(hooks: tuple[LimiterHooks, ...], item: RateItem, delay: int) -> None:
    for hook in hooks:
        _call(hook.admitted, item.name, item.weight, delay)


def waiting(hooks: tuple[LimiterHooks, ...], item: RateItem, delay: int) -> None:
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug("waiting %d ms for room: name=%r weight=%d", delay, item.name, item.weight)
    for hook in hooks:
        _call(hook.waiting, item.name, item.weight, delay)


def refused(hooks: tuple[LimiterHooks, ...], item: RateItem, rate: Rate, delay: int | None) -> None:
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug("refused by %s: name=%r weight=%d wait needed=%s", rate, item.name, item.weight, delay)
    for hook in hooks:
        _call(hook.refused, item.name, item.weight, rate, delay)


def backend_failed(
    hooks: tuple[LimiterHooks, ...], item: RateItem, error: BackendError, policy: OnBackendError, first: bool
) -> None:
    if first:  # once an outage: every caller meets it, the log needs it once
        doing = {"raise": "raising BackendError", "allow": "admitting (failing open)", "deny": "refusing"}[policy]
        logger.warning("backend failing, %s until it answers again: %s", doing, error)
    for hook in hooks:
        _call(hook.backend_error, item.name, item.weight, error, policy)


def backend_back() -> None:
    logger.warning("backend answering again")


def _call(method: object, *args: object) -> None:
    try:
        method(*args)  # type: ignore[operator]
    except Exception:
        logger.warning("hook %r failed", method, exc_info=True)
