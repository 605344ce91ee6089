"""Helpers beside the core: HTTP clients (httpx, requests, aiohttp) and an ASGI middleware.

Import each from its own module (``pyrate_limiter.contrib.httpx``, ...): this package imports
none of the client libraries, and the core never imports this package.
"""

from __future__ import annotations

from ._feedback import ServerHoldException, parse_retry_after

__all__ = ["ServerHoldException", "parse_retry_after"]
