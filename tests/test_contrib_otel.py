"""The OpenTelemetry hooks, read back through the SDK's in-memory reader."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from pyrate_limiter import AsyncLimiter, AsyncRedisBucket, Limiter, Rate
from pyrate_limiter.contrib.otel import OpenTelemetryHooks

from .fake_clock import T0, FakeClock
from .redis_clients import redis_client


def points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    """Every metric's data points by name."""
    found: dict[str, list[Any]] = {}
    data = reader.get_metrics_data()
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                found[metric.name] = list(metric.data.data_points)
    return found


def hooks_and_reader(**options: Any) -> tuple[OpenTelemetryHooks, InMemoryMetricReader]:
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("test")
    return OpenTelemetryHooks(meter, **options), reader


def test_counts_admissions_refusals_and_waits_per_key_when_asked() -> None:
    hooks, reader = hooks_and_reader(attributes=lambda name: {"api": name})
    limiter = Limiter(Rate(2, 20), clock=FakeClock(T0), max_delay=50, raise_when_fail=False, hooks=[hooks])
    assert limiter.try_acquire("a", 2)
    assert limiter.try_acquire("a")  # waits 21 ms
    assert not limiter.try_acquire("a", 3)
    found = points(reader)
    (admitted,) = found["pyrate_limiter.admitted"]
    assert (admitted.value, dict(admitted.attributes)) == (2, {"api": "a"})
    (refused,) = found["pyrate_limiter.refused"]
    assert (refused.value, dict(refused.attributes)) == (1, {"api": "a", "rate": "limit=2/20ms"})
    (waits,) = found["pyrate_limiter.wait"]
    assert (waits.count, waits.sum, waits.min, waits.max) == (2, 21, 0, 21)


@pytest.mark.anyio
async def test_counts_backend_errors_with_the_policy_and_no_name_by_default() -> None:
    with socket.socket() as probe:  # a loopback port nothing listens on: a real refused connection
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = redis_client(f"redis://127.0.0.1:{port}/0", native=False, retries=0)  # a sync one runs under trio too
    hooks, reader = hooks_and_reader()
    bucket = AsyncRedisBucket([Rate(1, 1000)], client, "unreachable")
    limiter = AsyncLimiter(bucket, clock=FakeClock(T0), on_backend_error="allow", hooks=[hooks])
    try:
        assert await limiter.try_acquire("secret-user-42")
    finally:
        client.close()
    (errors,) = points(reader)["pyrate_limiter.backend_errors"]
    assert (errors.value, dict(errors.attributes)) == (1, {"policy": "allow"})
