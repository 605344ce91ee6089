"""httpx transports that acquire from a limiter before each request and honour ``Retry-After``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx

from ._feedback import (
    aadmit,
    admit,
    ahold,
    async_limiter,
    hold,
    hold_from,
    may_retry,
    split_key,
    sync_limiter,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from .._async.limiter import AsyncLimiter
    from .._sync.limiter import Limiter
    from ._feedback import Key

__all__ = ["AsyncLimiterTransport", "LimiterTransport"]


class LimiterTransport(httpx.BaseTransport):
    """A transport for ``httpx.Client`` that acquires from a sync ``Limiter`` before sending.

    ``httpx.Client(transport=LimiterTransport(limiter))``. A request waits for room (and for a
    server's hold) within the limiter's ``max_delay``; a refusal raises the limiter's
    exception, and nothing is sent. A 429 or 503 with ``Retry-After`` holds the request's key
    for every caller of ``limiter``.

    :param transport: where admitted requests go; ``httpx.HTTPTransport()`` by default.
    :param key: the name a request is acquired under, or ``(name, weight)``; the URL's host by
        default. Holds are per name; limits are per name only if the limiter's bucket factory
        gives each name a bucket (a limiter over one bucket counts every name in it).
    :param retry: send a held GET, HEAD, OPTIONS, PUT or DELETE once more when the hold ends
        within ``max_delay``; otherwise the 429/503 is returned as it came.
    :raises TypeError: ``limiter`` is not a sync ``Limiter``.
    :raises ValueError: the limiter does not raise on refusal.
    """

    def __init__(
        self,
        limiter: Limiter,
        transport: httpx.BaseTransport | None = None,
        key: Callable[[httpx.Request], Key] | None = None,
        *,
        retry: bool = False,
    ) -> None:
        self.limiter = sync_limiter(limiter)
        self.transport = transport if transport is not None else httpx.HTTPTransport()
        self.key = key if key is not None else _host
        self.retry = retry

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        name, weight = split_key(self.key(request))
        response, held = self._send(request, name, weight)
        if held and self.retry and may_retry(self.limiter, held, request.method, _replayable(request)):
            response.close()
            response, _ = self._send(request, name, weight)
        return response

    def _send(self, request: httpx.Request, name: str, weight: int) -> tuple[httpx.Response, float | None]:
        admit(self.limiter, name, weight)
        response = self.transport.handle_request(request)
        seconds = hold_from(response.status_code, response.headers.get("Retry-After"))
        if seconds is not None:
            hold(self.limiter, name, seconds)
        return response, seconds

    def close(self) -> None:
        self.transport.close()


class AsyncLimiterTransport(httpx.AsyncBaseTransport):
    """A transport for ``httpx.AsyncClient`` that acquires from an ``AsyncLimiter`` before sending.

    The async twin of ``LimiterTransport``, under asyncio or trio; the inner transport is
    ``httpx.AsyncHTTPTransport()`` by default.

    :raises TypeError: ``limiter`` is not an ``AsyncLimiter``.
    :raises ValueError: the limiter does not raise on refusal.
    """

    def __init__(
        self,
        limiter: AsyncLimiter,
        transport: httpx.AsyncBaseTransport | None = None,
        key: Callable[[httpx.Request], Key] | None = None,
        *,
        retry: bool = False,
    ) -> None:
        self.limiter = async_limiter(limiter)
        self.transport = transport if transport is not None else httpx.AsyncHTTPTransport()
        self.key = key if key is not None else _host
        self.retry = retry

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        name, weight = split_key(self.key(request))
        response, held = await self._send(request, name, weight)
        if held and self.retry and may_retry(self.limiter, held, request.method, _replayable(request)):
            await response.aclose()
            response, _ = await self._send(request, name, weight)
        return response

    async def _send(self, request: httpx.Request, name: str, weight: int) -> tuple[httpx.Response, float | None]:
        await aadmit(self.limiter, name, weight)
        response = await self.transport.handle_async_request(request)
        seconds = hold_from(response.status_code, response.headers.get("Retry-After"))
        if seconds is not None:
            await ahold(self.limiter, name, seconds)
        return response, seconds

    async def aclose(self) -> None:
        await self.transport.aclose()


def _host(request: httpx.Request) -> str:
    return request.url.host


def _replayable(request: httpx.Request) -> bool:
    # A body httpx holds in memory can go twice; a generator or file stream cannot.
    return isinstance(request.stream, httpx.ByteStream)
