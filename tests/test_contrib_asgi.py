"""The ASGI middleware: a Starlette app under a real uvicorn, asked by a real httpx client; and the
middleware called directly, under asyncio and trio, for what a server seldom sends (websockets)."""

from __future__ import annotations

import contextlib
import math
import time
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from pyrate_limiter import (
    AsyncAbstractBucket,
    AsyncBucketFactory,
    AsyncInMemoryBucket,
    AsyncLimiter,
    AsyncTimeClock,
    Rate,
    RateItem,
)
from pyrate_limiter.contrib.asgi import RateLimitMiddleware
from tests.http_server import serve_in_thread

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator, MutableMapping

    from starlette.requests import Request

    from pyrate_limiter.contrib._feedback import Key

LIMIT, INTERVAL = 3, 5000


class PerName(AsyncBucketFactory):
    """A bucket per name: what limits each key on its own (a limiter over one bucket limits all together)."""

    def __init__(self, rates: list[Rate]) -> None:
        self.rates = rates
        self.clock = AsyncTimeClock()
        self.buckets: dict[str, AsyncAbstractBucket] = {}

    async def wrap_item(self, name: str, weight: int = 1) -> RateItem:
        return RateItem(name, await self.clock.now(), weight)

    async def get(self, item: RateItem) -> AsyncAbstractBucket:
        if item.name not in self.buckets:
            self.buckets[item.name] = self.create(self.clock, AsyncInMemoryBucket, self.rates)
        return self.buckets[item.name]


class Site:
    """A Starlette app behind the middleware; ``calls`` counts what reached its endpoints."""

    def __init__(self) -> None:
        self.calls = 0
        self.started = False
        self.limiter = AsyncLimiter(PerName([Rate(LIMIT, INTERVAL)]))
        self.app = Starlette(
            routes=[Route("/hello", self.hello), Route("/heavy", self.hello)],
            middleware=[Middleware(RateLimitMiddleware, limiter=self.limiter, key=self.key)],
            lifespan=self.lifespan,
        )

    @staticmethod
    def key(scope: MutableMapping[str, Any]) -> Key:
        client = scope["client"][0]
        return (client, 100) if scope["path"] == "/heavy" else client

    async def hello(self, request: Request) -> PlainTextResponse:
        self.calls += 1
        return PlainTextResponse("hello")

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        # Runs only if the middleware passes the lifespan scope through; the limiter's leak runs inside.
        async with self.limiter:
            self.started = True
            yield


@pytest.fixture(scope="module")
def site() -> Iterator[tuple[Site, httpx.Client]]:
    served = Site()
    with serve_in_thread(served.app) as url, httpx.Client(base_url=url) as client:
        yield served, client


def test_admitted_requests_reach_the_endpoint_and_refused_ones_get_429_with_headers(
    site: tuple[Site, httpx.Client],
) -> None:
    served, client = site
    assert served.started  # the lifespan scope passed through
    started = time.monotonic()
    for _ in range(LIMIT):
        response = client.get("/hello")
        assert (response.status_code, response.text) == (200, "hello")
        assert "retry-after" not in response.headers
    refused = client.get("/hello")
    elapsed_ms = (time.monotonic() - started) * 1000

    assert refused.status_code == 429
    headers = refused.headers
    assert headers["ratelimit-limit"] == str(LIMIT)
    assert headers["ratelimit-remaining"] == "0"
    assert headers["retry-after"] == headers["ratelimit-reset"]
    # The wait is until the first of the three leaves the window: INTERVAL + 1 ms after it at most,
    # and no less than INTERVAL minus the time the four requests took.
    retry_after = int(headers["retry-after"])
    assert math.ceil((INTERVAL - elapsed_ms) / 1000) <= retry_after <= math.ceil((INTERVAL + 1) / 1000)
    assert served.calls == LIMIT  # the endpoint never ran for the refusal


def test_a_weight_that_can_never_fit_gets_429_without_retry_after(site: tuple[Site, httpx.Client]) -> None:
    served, client = site
    calls = served.calls
    refused = client.get("/heavy")
    assert refused.status_code == 429
    assert refused.headers["ratelimit-limit"] == str(LIMIT)
    assert "retry-after" not in refused.headers
    assert "ratelimit-reset" not in refused.headers
    assert served.calls == calls


async def test_the_middleware_runs_under_any_event_loop_and_passes_other_scopes_through() -> None:
    seen: list[str] = []

    async def app(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        seen.append(scope["type"])
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    sent: list[MutableMapping[str, Any]] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    middleware = RateLimitMiddleware(app, AsyncLimiter(PerName([Rate(1, 60_000)])))
    http = {"type": "http", "path": "/", "client": ("10.0.0.1", 5000), "headers": []}
    for _ in range(2):
        await middleware(http, receive, send)
    for _ in range(2):  # not limited: these pass however many come
        await middleware({"type": "websocket", "path": "/ws", "client": ("10.0.0.1", 5000)}, receive, send)
    await middleware({**http, "client": None}, receive, send)  # no client address: the key is ""

    assert seen == ["http", "websocket", "websocket", "http"]
    statuses = [message["status"] for message in sent if message["type"] == "http.response.start"]
    assert statuses == [204, 429, 204]
    refusal = dict(sent[2]["headers"])
    assert refusal[b"retry-after"] == refusal[b"ratelimit-reset"]
    assert refusal[b"retry-after"] in {b"60", b"61"}  # 60 001 ms when all came within one ms
