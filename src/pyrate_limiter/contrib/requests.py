"""A requests adapter that acquires from a limiter before each request and honours ``Retry-After``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from requests.adapters import HTTPAdapter

from ._feedback import admit, hold, hold_from, may_retry, split_key, sync_limiter

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from requests import PreparedRequest, Response

    from .._sync.limiter import Limiter
    from ._feedback import Key

__all__ = ["LimiterAdapter"]


class LimiterAdapter(HTTPAdapter):
    """An ``HTTPAdapter`` that acquires from a sync ``Limiter`` before sending.

    ``session.mount("https://", LimiterAdapter(limiter))``. A request waits for room (and for
    a server's hold) within the limiter's ``max_delay``; a refusal raises the limiter's
    exception, and nothing is sent. A 429 or 503 with ``Retry-After`` holds the request's key
    for every caller of ``limiter``.

    :param key: the name a request is acquired under, or ``(name, weight)``; the URL's host by
        default. Holds are per name; limits are per name only if the limiter's bucket factory
        gives each name a bucket (a limiter over one bucket counts every name in it).
    :param retry: send a held GET, HEAD, OPTIONS, PUT or DELETE once more when the hold ends
        within ``max_delay``; otherwise the 429/503 is returned as it came.
    :param kwargs: for ``HTTPAdapter`` (``pool_maxsize``, ``max_retries``, ...).
    :raises TypeError: ``limiter`` is not a sync ``Limiter``.
    :raises ValueError: the limiter does not raise on refusal.
    """

    def __init__(
        self,
        limiter: Limiter,
        key: Callable[[PreparedRequest], Key] | None = None,
        *,
        retry: bool = False,
        **kwargs: Any,
    ) -> None:
        self.limiter = sync_limiter(limiter)
        self.key = key if key is not None else _host
        self.retry = retry
        super().__init__(**kwargs)

    def send(
        self,
        request: PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float, float] | tuple[float, None] | None = None,
        verify: bool | str = True,
        cert: bytes | str | tuple[bytes | str, bytes | str] | None = None,
        proxies: Mapping[str, str] | None = None,
    ) -> Response:
        name, weight = split_key(self.key(request))
        sent = {"stream": stream, "timeout": timeout, "verify": verify, "cert": cert, "proxies": proxies}
        response, held = self._send(request, name, weight, sent)
        if held and self.retry and may_retry(self.limiter, held, str(request.method), _replayable(request)):
            response.close()
            response, _ = self._send(request, name, weight, sent)
        return response

    def _send(
        self, request: PreparedRequest, name: str, weight: int, sent: dict[str, Any]
    ) -> tuple[Response, float | None]:
        admit(self.limiter, name, weight)
        response = super().send(request, **sent)
        seconds = hold_from(response.status_code, response.headers.get("Retry-After"))
        if seconds is not None:
            hold(self.limiter, name, seconds)
        return response, seconds


def _host(request: PreparedRequest) -> str:
    return urlsplit(request.url or "").hostname or ""


def _replayable(request: PreparedRequest) -> bool:
    # A body in memory can go twice; a generator or a file cannot.
    return request.body is None or isinstance(request.body, bytes | str)
