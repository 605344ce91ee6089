"""Loopback HTTP servers for the contrib tests: uvicorn in a subprocess serving ``LimitedApp``, a
server that enforces its own sliding-window limit, or any ASGI app in a thread of this process."""

from __future__ import annotations

import collections
import contextlib
import json
import math
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import httpx
import uvicorn

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator, MutableMapping

    Message = MutableMapping[str, Any]
    Receive = Callable[[], Awaitable[Message]]
    Send = Callable[[Message], Awaitable[None]]

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0


class LimitedApp:
    """Admits at most ``limit`` requests in any ``window`` seconds, counted on its own monotonic clock at
    arrival; a request over the limit is not counted and gets 429 with ``Retry-After``: the HTTP date
    (whole seconds, rounded up) at which the window has room again.

    ``/control?limit=&window=`` sets these and forgets every arrival; ``/stats`` tells what
    was answered; the first request to each ``/busy/<token>`` gets 429 with ``Retry-After: 1``,
    later ones 200 (``/stats`` counts them per token). Every other path is limited.
    """

    def __init__(self) -> None:
        self.limit = 10
        self.window = 0.1
        self.arrivals: collections.deque[float] = collections.deque()
        self.answered = {"ok": 0, "refused": 0}
        self.busy: dict[str, int] = {}

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        now = time.monotonic()
        await _drain(receive)
        path: str = scope["path"]
        if path == "/control":
            query = dict(parse_qsl(scope["query_string"].decode()))
            self.limit = int(query.get("limit", self.limit))
            self.window = float(query.get("window", self.window))
            self.arrivals.clear()
            self.answered = {"ok": 0, "refused": 0}
            await _answer(send, 200, json.dumps({"limit": self.limit, "window": self.window}))
        elif path == "/stats":
            await _answer(send, 200, json.dumps({**self.answered, "busy": self.busy}))
        elif path.startswith("/busy/"):
            token = path.removeprefix("/busy/")
            self.busy[token] = seen = self.busy.get(token, 0) + 1
            if seen == 1:
                await _answer(send, 429, "busy", [("retry-after", "1")])
            else:
                await _answer(send, 200, "ok")
        else:
            await self._limited(now, send)

    async def _limited(self, now: float, send: Send) -> None:
        while self.arrivals and self.arrivals[0] <= now - self.window:
            self.arrivals.popleft()
        if len(self.arrivals) < self.limit:
            self.arrivals.append(now)
            self.answered["ok"] += 1
            await _answer(send, 200, "ok")
            return
        self.answered["refused"] += 1
        wait = self.arrivals[0] + self.window - now  # until the oldest arrival leaves the window
        retry_after = formatdate(math.ceil(time.time() + wait), usegmt=True)
        await _answer(send, 429, "over the limit", [("retry-after", retry_after)])


@dataclass
class LimitedServer:
    """A running ``LimitedApp`` and a client to steer it."""

    url: str
    control_client: httpx.Client

    def control(self, **params: object) -> None:
        self.control_client.get("/control", params={k: str(v) for k, v in params.items()}).raise_for_status()

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = self.control_client.get("/stats").raise_for_status().json()
        return stats


@contextlib.contextmanager
def limited_server() -> Iterator[LimitedServer]:
    """``LimitedApp`` under uvicorn in a subprocess (so its clock and loop never wait on our threads)."""
    with _listening_socket() as sock:
        argv = [sys.executable, "-m", "tests.http_server", str(sock.fileno())]
        process = subprocess.Popen(argv, cwd=ROOT, pass_fds=(sock.fileno(),), stdin=subprocess.DEVNULL)
        url = f"http://{HOST}:{sock.getsockname()[1]}"
    try:
        with httpx.Client(base_url=url, timeout=START_TIMEOUT) as client:
            # The socket listens already, so this waits in its backlog until uvicorn serves it.
            client.get("/stats").raise_for_status()
            yield LimitedServer(url, client)
    finally:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def serve_in_thread(app: Callable[..., Any]) -> Iterator[str]:
    """Serve ``app`` (lifespan on) with uvicorn in a thread of this process; yield its URL."""
    with _listening_socket() as sock:
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="uvicorn", daemon=True)
        thread.start()
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while not server.started:
                assert thread.is_alive(), "uvicorn stopped while starting"
                assert time.monotonic() < deadline, "uvicorn did not start"
                time.sleep(0.01)
            yield f"http://{HOST}:{sock.getsockname()[1]}"
        finally:
            server.should_exit = True
            thread.join(STOP_TIMEOUT)
            assert not thread.is_alive(), "uvicorn did not stop"


def _listening_socket() -> socket.socket:
    # Bound and listening before the server starts: no race for the port, and no wait for readiness.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((HOST, 0))
    sock.listen(128)
    return sock


async def _drain(receive: Receive) -> None:
    while (await receive()).get("more_body"):
        pass


async def _answer(send: Send, status: int, text: str, headers: list[tuple[str, str]] | None = None) -> None:
    body = text.encode()
    fields = [("content-type", "text/plain"), ("content-length", str(len(body))), *(headers or [])]
    await send(
        {"type": "http.response.start", "status": status, "headers": [(k.encode(), v.encode()) for k, v in fields]}
    )
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    """Serve ``LimitedApp`` on the listening socket whose file descriptor is ``argv[1]``."""
    sock = socket.socket(fileno=int(sys.argv[1]))
    config = uvicorn.Config(LimitedApp(), log_level="warning", access_log=False, lifespan="off")
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
