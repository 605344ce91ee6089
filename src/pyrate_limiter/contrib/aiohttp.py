"""An aiohttp client middleware that acquires from a limiter before each request and honours ``Retry-After``.

Client middlewares came with aiohttp 3.12: ``ClientSession(middlewares=(LimiterMiddleware(limiter),))``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._feedback import aadmit, ahold, async_limiter, hold_from, may_retry, split_key

if TYPE_CHECKING:
    from collections.abc import Callable

    from aiohttp import ClientHandlerType, ClientRequest, ClientResponse

    from .._async.limiter import AsyncLimiter
    from ._feedback import Key

__all__ = ["LimiterMiddleware"]


class LimiterMiddleware:
    """A client middleware that acquires from an ``AsyncLimiter`` before sending (asyncio only, as aiohttp).

    A request waits for room (and for a server's hold) within the limiter's ``max_delay``; a
    refusal raises the limiter's exception, and nothing is sent. A 429 or 503 with
    ``Retry-After`` holds the request's key for every caller of ``limiter``.

    :param key: the name a request is acquired under, or ``(name, weight)``; the URL's host by
        default. Holds are per name; limits are per name only if the limiter's bucket factory
        gives each name a bucket (a limiter over one bucket counts every name in it).
    :param retry: send a held GET, HEAD, OPTIONS, PUT or DELETE once more when the hold ends
        within ``max_delay``; otherwise the 429/503 is returned as it came.
    :raises TypeError: ``limiter`` is not an ``AsyncLimiter``.
    :raises ValueError: the limiter does not raise on refusal.
    """

    def __init__(
        self,
        limiter: AsyncLimiter,
        key: Callable[[ClientRequest], Key] | None = None,
        *,
        retry: bool = False,
    ) -> None:
        self.limiter = async_limiter(limiter)
        self.key = key if key is not None else _host
        self.retry = retry

    async def __call__(self, request: ClientRequest, handler: ClientHandlerType) -> ClientResponse:
        name, weight = split_key(self.key(request))
        response, held = await self._send(request, handler, name, weight)
        if held and self.retry and may_retry(self.limiter, held, request.method, _replayable(request)):
            # aiohttp lets a middleware call its handler again: the same request, its payload sent anew.
            response.release()
            response, _ = await self._send(request, handler, name, weight)
        return response

    async def _send(
        self, request: ClientRequest, handler: ClientHandlerType, name: str, weight: int
    ) -> tuple[ClientResponse, float | None]:
        await aadmit(self.limiter, name, weight)
        response = await handler(request)
        seconds = hold_from(response.status, response.headers.get("Retry-After"))
        if seconds is not None:
            await ahold(self.limiter, name, seconds)
        return response, seconds


def _host(request: ClientRequest) -> str:
    return request.url.host or ""


def _replayable(request: ClientRequest) -> bool:
    # Bytes, forms and seekable files can go twice; a stream that was read through cannot.
    body = request.body
    return isinstance(body, bytes) or not body.consumed
