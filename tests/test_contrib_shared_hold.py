"""A server's ``Retry-After`` seen by one process holds back every process sharing the limiter's backend."""

from __future__ import annotations

import multiprocessing
import time
import uuid
from typing import Any

import httpx
import redis

from pyrate_limiter import Limiter, Rate, RedisBucket
from pyrate_limiter.contrib.httpx import LimiterTransport
from tests.http_server import limited_server

RATES = [Rate(100, 1000)]  # room to spare: only the hold can make anyone wait


class NotingTransport(httpx.HTTPTransport):
    """Notes the wall-clock ms at which each request really leaves for the server."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[int] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(time.time_ns() // 1_000_000)
        return super().handle_request(request)


def send_when_told(server_url: str, redis_url: str, key: str, ready: Any, go: Any, out: Any) -> None:
    """Another process: its own client, limiter and bucket over the same Redis key, one request when told."""
    with redis.Redis.from_url(redis_url) as client, Limiter(RedisBucket(RATES, client, key), max_delay=5000) as limiter:
        inner = NotingTransport()
        with httpx.Client(base_url=server_url, transport=LimiterTransport(limiter, inner, key=lambda _: "api")) as http:
            ready.set()
            go.wait(60)
            status = http.get("/stats").status_code
    out.put((status, inner.sent))


def test_a_429_in_one_process_holds_a_request_of_another(redis_url: str) -> None:
    key = f"shared-hold-{uuid.uuid4().hex}"
    context = multiprocessing.get_context("spawn")  # this process has threads: fork would copy them
    ready, go, out = context.Event(), context.Event(), context.Queue()
    with (
        limited_server() as server,
        redis.Redis.from_url(redis_url) as client,
        Limiter(RedisBucket(RATES, client, key), max_delay=5000) as limiter,
    ):
        other = context.Process(target=send_when_told, args=(server.url, redis_url, key, ready, go, out))
        other.start()
        try:
            assert ready.wait(60), "the other process never came up"
            transport = LimiterTransport(limiter, key=lambda _: "api")
            with httpx.Client(base_url=server.url, transport=transport) as http:
                assert http.get(f"/busy/{uuid.uuid4().hex}").status_code == 429  # Retry-After: 1
            end = limiter.paused_until("api")
            assert end >= time.time_ns() // 1_000_000 + 500  # the hold is in the shared bucket
            go.set()
            status, sent = out.get(timeout=60)
        finally:
            other.join(30)
            if other.is_alive():
                other.kill()
    assert status == 200
    (sent_at,) = sent
    assert sent_at >= end  # it waited the hold out, though nothing in its own process knew of it
