"""The HTTP-client helpers against a real server on loopback that enforces its own limit.

The server (tests/http_server.py, uvicorn in a subprocess) admits 10 requests in any 100 ms,
counted on its clock at arrival, and answers 429 with ``Retry-After`` when over. It is the
judge: with our limiter at that limit (and a margin for the trip) no request is refused, and
once it halves its limit every client backs off for as long as it was told.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
import anyio
import httpx
import pytest
import requests
from requests.adapters import HTTPAdapter

from pyrate_limiter import AsyncLimiter, Limiter, Rate
from pyrate_limiter.contrib import ServerHoldException
from pyrate_limiter.contrib._feedback import hold_from
from pyrate_limiter.contrib.aiohttp import LimiterMiddleware
from pyrate_limiter.contrib.httpx import AsyncLimiterTransport, LimiterTransport
from pyrate_limiter.contrib.requests import LimiterAdapter
from tests.http_server import limited_server

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping

    from tests.http_server import LimitedServer

    SyncSend = Callable[[str, str], int]  # (method, path) -> status
    AsyncSend = Callable[[str, str], Awaitable[int]]

SERVER_LIMIT, SERVER_WINDOW = 10, 0.1
# Ours is the server's limit over a window 200 ms longer. The server counts a request when it
# arrives, some time d after we admitted it; any 11 of our admissions span more than 300 ms, so
# any 11 arrivals span more than the server's 100 ms as long as d varies by less than 200 ms.
# What d varies by is mostly the clients' own work: the limiter admits a whole burst at once,
# and the last of it reaches the server only once the client has put the others on the wire and
# the server has read them. For a burst of 20 on this 2-core box we measured up to ~20 ms with
# threads, ~90 ms with aiohttp and ~120 ms with httpx's async pool (more when other processes
# want the cores), so "+50 ms" failed now and then; a burst of 10 halves that, +200 ms covers it.
# A client's first burst also opens its connections (each a getaddrinfo in a worker thread),
# which delayed it by ~180 ms: each test opens them first, on a path the server does not count.
OUR_RATE = Rate(SERVER_LIMIT, 300)
MAX_DELAY = 10_000  # enough to wait through every hold and queue here: nothing is refused on our side
REQUESTS, HALVED_REQUESTS = 40, 15
THREADS, TASKS = 8, 100
# After the inner transport returns a 429 and before the helper records its hold, another
# thread may pass its last hold check and send: that request was as good as in flight. Tasks
# have no such gap: nothing awaits between the two, so no other task runs there.
THREAD_SLACK, TASK_SLACK = 0.1, 0.0


@pytest.fixture(scope="session")
def server() -> Iterator[LimitedServer]:
    with limited_server() as running:
        yield running


# -- the server's limit, then half of it ----------------------------------------------------------


@pytest.mark.parametrize("client", ["httpx", "requests"])
def test_threads_stay_under_the_server_limit_and_back_off_when_it_halves(server: LimitedServer, client: str) -> None:
    exchanges = Exchanges()
    with (
        Limiter(OUR_RATE, max_delay=MAX_DELAY) as limiter,
        SYNC_CLIENTS[client](server.url, limiter, exchanges) as send,
    ):
        server.control(limit=SERVER_LIMIT, window=SERVER_WINDOW)
        with ThreadPoolExecutor(THREADS) as pool:
            list(pool.map(lambda _: send("GET", "/stats"), range(SERVER_LIMIT)))  # open the connections
            exchanges.clear()
            statuses = list(pool.map(lambda _: send("GET", "/api"), range(REQUESTS)))
        assert_none_refused(server, exchanges, statuses)

        exchanges.clear()
        server.control(limit=SERVER_LIMIT // 2)
        with ThreadPoolExecutor(THREADS) as pool:
            statuses = list(pool.map(lambda _: send("GET", "/api"), range(HALVED_REQUESTS)))
        assert_backed_off(server, exchanges, statuses, THREADS, THREAD_SLACK)


# aiohttp runs on asyncio only, so it is not run under trio; httpx runs on both.
ASYNC_RUNS = [("asyncio", "httpx"), ("trio", "httpx"), ("asyncio", "aiohttp")]


@pytest.mark.parametrize(("anyio_backend", "client"), ASYNC_RUNS)
async def test_tasks_stay_under_the_server_limit_and_back_off_when_it_halves(
    server: LimitedServer, client: str
) -> None:
    exchanges = Exchanges()
    async with (
        AsyncLimiter(OUR_RATE, max_delay=MAX_DELAY) as limiter,
        ASYNC_CLIENTS[client](server.url, limiter, exchanges) as send,
    ):
        server.control(limit=SERVER_LIMIT, window=SERVER_WINDOW)
        await run_tasks(send, SERVER_LIMIT, "/stats")  # open the connections
        exchanges.clear()
        assert_none_refused(server, exchanges, await run_tasks(send, REQUESTS))

        exchanges.clear()
        server.control(limit=SERVER_LIMIT // 2)
        assert_backed_off(server, exchanges, await run_tasks(send, HALVED_REQUESTS), TASKS, TASK_SLACK)


def assert_none_refused(server: LimitedServer, exchanges: Exchanges, statuses: list[int]) -> None:
    assert statuses == [200] * len(statuses)
    assert server.stats()["refused"] == 0
    assert len(exchanges.items) == len(statuses)


def assert_backed_off(
    server: LimitedServer, exchanges: Exchanges, statuses: list[int], workers: int, slack: float
) -> None:
    """Once told to wait, nobody sends until the wait is over; only requests in flight meet a 429.

    Group the 429s by the first one of each hold: the others were sent before it came back (they
    were in flight, at most one per worker). From its arrival (plus ``slack``) until its
    ``Retry-After`` ends, no request of any worker was sent.
    """
    stats = server.stats()
    assert sorted(statuses) == sorted(e.status for e in exchanges.items)
    assert (statuses.count(200), statuses.count(429)) == (stats["ok"], stats["refused"])
    refused = sorted((e for e in exchanges.items if e.status == 429), key=lambda e: e.answered)
    assert refused, "the server never refused: the test proved nothing"
    holds: list[list[Exchange]] = []
    for exchange in refused:
        if holds and exchange.sent < holds[-1][0].answered + slack:
            holds[-1].append(exchange)
        else:
            holds.append([exchange])
    for first, *in_flight in holds:
        assert first.hold is not None
        assert len(in_flight) <= workers - 1
        during = [e for e in exchanges.items if first.answered + slack <= e.sent < first.answered + first.hold]
        assert not during, f"sent during a {first.hold:.3f} s hold: {during}"


async def run_tasks(send: AsyncSend, count: int, path: str = "/api") -> list[int]:
    statuses: list[int] = []
    left = [count]

    async def worker() -> None:
        while left[0]:
            left[0] -= 1
            statuses.append(await send("GET", path))

    async with anyio.create_task_group() as tasks:
        for _ in range(TASKS):
            tasks.start_soon(worker)
    return statuses


# -- retrying once, and refusing a hold longer than max_delay ----------------------------------------


@pytest.mark.parametrize("client", ["httpx", "requests"])
def test_sync_retry_sends_a_held_get_again_once_but_never_a_post(server: LimitedServer, client: str) -> None:
    get, post = f"g{uuid.uuid4().hex}", f"p{uuid.uuid4().hex}"
    with (
        Limiter(Rate(100, 1000), max_delay=2000) as limiter,
        SYNC_CLIENTS[client](server.url, limiter, None, True) as send,
    ):
        assert send("GET", f"/busy/{get}") == 200  # 429 with Retry-After: 1, then again after 1 s
        assert send("POST", f"/busy/{post}") == 429
    assert_busy(server, {get: 2, post: 1})


@pytest.mark.parametrize("client", ["httpx", "requests"])
def test_sync_hold_longer_than_max_delay_refuses_with_our_exception_and_sends_nothing(
    server: LimitedServer, client: str
) -> None:
    first, second = f"a{uuid.uuid4().hex}", f"b{uuid.uuid4().hex}"
    with (
        Limiter(Rate(100, 1000), max_delay=500) as limiter,
        SYNC_CLIENTS[client](server.url, limiter, None, True) as send,
    ):
        assert send("GET", f"/busy/{first}") == 429  # a 1 s hold is no retry within 500 ms
        with pytest.raises(ServerHoldException):
            send("GET", f"/busy/{second}")
    assert_busy(server, {first: 1, second: None})


@pytest.mark.parametrize(("anyio_backend", "client"), ASYNC_RUNS)
async def test_async_retry_sends_a_held_get_again_once_but_never_a_post(server: LimitedServer, client: str) -> None:
    get, post = f"g{uuid.uuid4().hex}", f"p{uuid.uuid4().hex}"
    async with (
        AsyncLimiter(Rate(100, 1000), max_delay=2000) as limiter,
        ASYNC_CLIENTS[client](server.url, limiter, None, True) as send,
    ):
        assert await send("GET", f"/busy/{get}") == 200
        assert await send("POST", f"/busy/{post}") == 429
    assert_busy(server, {get: 2, post: 1})


@pytest.mark.parametrize(("anyio_backend", "client"), ASYNC_RUNS)
async def test_async_hold_longer_than_max_delay_refuses_with_our_exception_and_sends_nothing(
    server: LimitedServer, client: str
) -> None:
    first, second = f"a{uuid.uuid4().hex}", f"b{uuid.uuid4().hex}"
    async with (
        AsyncLimiter(Rate(100, 1000), max_delay=500) as limiter,
        ASYNC_CLIENTS[client](server.url, limiter, None, True) as send,
    ):
        assert await send("GET", f"/busy/{first}") == 429
        with pytest.raises(ServerHoldException):
            await send("GET", f"/busy/{second}")
    assert_busy(server, {first: 1, second: None})


def assert_busy(server: LimitedServer, seen: Mapping[str, int | None]) -> None:
    busy = server.stats()["busy"]
    assert {token: busy.get(token) for token in seen} == seen


# -- what the server saw leave, recorded beneath each helper -----------------------------------------


@dataclass(frozen=True)
class Exchange:
    sent: float  # monotonic, as the request left the helper
    answered: float
    status: int
    hold: float | None  # what its Retry-After asked for, read as it came


class Exchanges:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.items: list[Exchange] = []

    def add(self, sent: float, status: int, retry_after: str | None) -> None:
        exchange = Exchange(sent, time.monotonic(), status, hold_from(status, retry_after))
        with self._lock:
            self.items.append(exchange)

    def clear(self) -> None:
        with self._lock:
            self.items.clear()


class RecordingTransport(httpx.BaseTransport):
    def __init__(self, exchanges: Exchanges) -> None:
        self.exchanges, self.transport = exchanges, httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        sent = time.monotonic()
        response = self.transport.handle_request(request)
        self.exchanges.add(sent, response.status_code, response.headers.get("Retry-After"))
        return response

    def close(self) -> None:
        self.transport.close()


class AsyncRecordingTransport(httpx.AsyncBaseTransport):
    def __init__(self, exchanges: Exchanges) -> None:
        self.exchanges, self.transport = exchanges, httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        sent = time.monotonic()
        response = await self.transport.handle_async_request(request)
        self.exchanges.add(sent, response.status_code, response.headers.get("Retry-After"))
        return response

    async def aclose(self) -> None:
        await self.transport.aclose()


class _RecordingHTTPAdapter(HTTPAdapter):
    exchanges: Exchanges

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        sent = time.monotonic()
        response = super().send(request, *args, **kwargs)
        self.exchanges.add(sent, response.status_code, response.headers.get("Retry-After"))
        return response


class RecordingLimiterAdapter(LimiterAdapter, _RecordingHTTPAdapter):
    """``LimiterAdapter`` whose ``super().send`` is the recording one: it records what leaves."""


@contextlib.contextmanager
def httpx_client(url: str, limiter: Limiter, exchanges: Exchanges | None, retry: bool = False) -> Iterator[SyncSend]:
    transport = LimiterTransport(limiter, RecordingTransport(exchanges or Exchanges()), retry=retry)
    with httpx.Client(transport=transport, base_url=url) as client:
        yield lambda method, path: client.request(method, path, content=_body(method)).status_code


@contextlib.contextmanager
def requests_client(url: str, limiter: Limiter, exchanges: Exchanges | None, retry: bool = False) -> Iterator[SyncSend]:
    adapter = RecordingLimiterAdapter(limiter, retry=retry, pool_maxsize=THREADS)
    adapter.exchanges = exchanges or Exchanges()
    with requests.Session() as session:
        session.mount("http://", adapter)
        yield lambda method, path: session.request(method, url + path, data=_body(method)).status_code


@contextlib.asynccontextmanager
async def httpx_async_client(
    url: str, limiter: AsyncLimiter, exchanges: Exchanges | None, retry: bool = False
) -> AsyncIterator[AsyncSend]:
    transport = AsyncLimiterTransport(limiter, AsyncRecordingTransport(exchanges or Exchanges()), retry=retry)
    async with httpx.AsyncClient(transport=transport, base_url=url) as client:

        async def send(method: str, path: str) -> int:
            return (await client.request(method, path, content=_body(method))).status_code

        yield send


@contextlib.asynccontextmanager
async def aiohttp_client(
    url: str, limiter: AsyncLimiter, exchanges: Exchanges | None, retry: bool = False
) -> AsyncIterator[AsyncSend]:
    recorded = exchanges or Exchanges()

    async def record(request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType) -> aiohttp.ClientResponse:
        sent = time.monotonic()
        response = await handler(request)
        recorded.add(sent, response.status, response.headers.get("Retry-After"))
        return response

    # The first middleware wraps the rest: the limiter's, then the recording one, then the wire.
    middlewares = (LimiterMiddleware(limiter, retry=retry), record)
    async with aiohttp.ClientSession(base_url=url, middlewares=middlewares) as session:

        async def send(method: str, path: str) -> int:
            async with session.request(method, path, data=_body(method)) as response:
                return response.status

        yield send


def _body(method: str) -> bytes | None:
    return b"payload" if method == "POST" else None


SYNC_CLIENTS: dict[str, Callable[..., contextlib.AbstractContextManager[SyncSend]]] = {
    "httpx": httpx_client,
    "requests": requests_client,
}
ASYNC_CLIENTS: dict[str, Callable[..., contextlib.AbstractAsyncContextManager[AsyncSend]]] = {
    "httpx": httpx_async_client,
    "aiohttp": aiohttp_client,
}
