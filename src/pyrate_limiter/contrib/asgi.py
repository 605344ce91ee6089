"""A pure ASGI middleware: a refused request gets 429 with ``Retry-After`` and ``RateLimit-*`` headers.

It needs no framework: wrap any ASGI app, or pass it to Starlette or FastAPI as a middleware class.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any, TypeAlias

from .._errors import BucketFullException, LimiterDelayException
from ._feedback import async_limiter, split_key

if TYPE_CHECKING:
    from .._async.limiter import AsyncLimiter
    from ._feedback import Key

__all__ = ["RateLimitMiddleware"]

Scope: TypeAlias = MutableMapping[str, Any]
Message: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]
ASGIApp: TypeAlias = Callable[[Scope, Receive, Send], Awaitable[None]]


class RateLimitMiddleware:
    """Admits each HTTP request through an ``AsyncLimiter`` before ``app`` sees it; never waits.

    ``RateLimitMiddleware(app, limiter)``, or ``Middleware(RateLimitMiddleware, limiter=limiter)``
    in Starlette or FastAPI. Each request is one ``try_acquire(key, weight, max_delay=0)``; a
    refused one never reaches ``app`` and is answered 429 with ``RateLimit-Limit`` (the
    refusing rate's limit). When it would fit later, also ``Retry-After`` and ``RateLimit-Reset``
    (whole seconds until it fits, rounded up) and ``RateLimit-Remaining: 0``; a weight larger
    than the limit gets neither. Lifespan and websocket scopes pass through untouched.

    :param key: the name a request's scope is acquired under, or ``(name, weight)``; the
        client's address by default (``""`` when the server gives none). Each client has a limit
        of its own only if the limiter's bucket factory gives each name a bucket; a limiter over
        one bucket (``AsyncLimiter(rate)``) limits all clients together.
    :raises TypeError: ``limiter`` is not an ``AsyncLimiter``.
    :raises ValueError: the limiter does not raise on refusal.
    """

    def __init__(self, app: ASGIApp, limiter: AsyncLimiter, key: Callable[[Scope], Key] | None = None) -> None:
        self.app = app
        self.limiter = async_limiter(limiter)
        self.key = key if key is not None else _client

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        name, weight = split_key(self.key(scope))
        try:
            await self.limiter.try_acquire(name, weight, max_delay=0)
        except LimiterDelayException as refused:
            seconds = str(math.ceil(refused.actual_delay / 1000))
            waits = [("retry-after", seconds), ("ratelimit-remaining", "0"), ("ratelimit-reset", seconds)]
            await _too_many(send, refused.rate.limit, waits)
            return
        except BucketFullException as refused:
            await _too_many(send, refused.rate.limit, [])
            return
        await self.app(scope, receive, send)


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else ""


async def _too_many(send: Send, limit: int, headers: list[tuple[str, str]]) -> None:
    body = b"Too Many Requests\n"
    sent = [
        ("content-type", "text/plain; charset=utf-8"),
        ("content-length", str(len(body))),
        ("ratelimit-limit", str(limit)),
        *headers,
    ]
    await send({"type": "http.response.start", "status": 429, "headers": [(k.encode(), v.encode()) for k, v in sent]})
    await send({"type": "http.response.body", "body": body})
