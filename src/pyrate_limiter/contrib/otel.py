"""OpenTelemetry metrics for a limiter: ``Limiter(..., hooks=[OpenTelemetryHooks()])``.

Needs the ``otel`` extra (``opentelemetry-api``); the SDK and exporter are the application's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._hooks import LimiterHooks

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from opentelemetry.metrics import Meter

    from .._errors import BackendError
    from .._rate import Rate


class OpenTelemetryHooks(LimiterHooks):
    """Counters of admitted and refused items and of backend errors, and a histogram of waits.

    ``pyrate_limiter.admitted`` and ``pyrate_limiter.refused`` count items (``weight`` is an
    attribute of neither, so that a series stays one per key), ``refused`` carries the refusing
    ``rate``; ``pyrate_limiter.backend_errors`` carries the ``policy`` applied;
    ``pyrate_limiter.wait`` records each admission's wait in ms (0: at once).

    :param meter: where the instruments live; by default the global provider's ``pyrate_limiter`` meter.
    :param attributes: the attributes of an item's series from its name, e.g. ``lambda name:
        {"api": name}``. None by default: names are often per user, too many series to keep.
    """

    def __init__(
        self, meter: Meter | None = None, *, attributes: Callable[[str], Mapping[str, Any]] | None = None
    ) -> None:
        try:
            from opentelemetry import metrics
        except ImportError as error:
            needs = "OpenTelemetryHooks needs opentelemetry-api: pip install 'pyrate-limiter[otel]'"
            raise ImportError(needs) from error
        meter = meter if meter is not None else metrics.get_meter("pyrate_limiter")
        self._attributes = attributes
        self._admitted = meter.create_counter("pyrate_limiter.admitted", unit="{item}", description="Items admitted")
        self._refused = meter.create_counter("pyrate_limiter.refused", unit="{item}", description="Items refused")
        self._errors = meter.create_counter(
            "pyrate_limiter.backend_errors", unit="{error}", description="Decisions the backend failed to make"
        )
        self._wait = meter.create_histogram(
            "pyrate_limiter.wait", unit="ms", description="How long each admitted item waited for room"
        )

    def admitted(self, name: str, weight: int, delay_ms: int) -> None:
        attributes = self._of(name)
        self._admitted.add(1, attributes)
        self._wait.record(delay_ms, attributes)

    def refused(self, name: str, weight: int, rate: Rate, delay_ms: int | None) -> None:
        self._refused.add(1, {**self._of(name), "rate": str(rate)})

    def backend_error(self, name: str, weight: int, error: BackendError, policy: str) -> None:
        self._errors.add(1, {**self._of(name), "policy": policy})

    def _of(self, name: str) -> Mapping[str, Any]:
        return {} if self._attributes is None else self._attributes(name)
