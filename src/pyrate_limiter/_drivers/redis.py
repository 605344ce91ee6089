"""Redis drivers: the bucket's script called on redis.asyncio (awaited) or on redis (blocking), side by side.

The async bucket takes its driver from ``async_driver``, the sync one from ``driver``: the one
name becomes the other in the generated code. The script is in ``redis.lua``, whose header
describes the keys and the arguments packed here.
"""

from __future__ import annotations

import binascii
import hashlib
import inspect
import itertools
import os
import struct
from importlib.resources import files
from typing import TYPE_CHECKING, Any, Protocol

from .._concurrency import arun_blocking
from .._errors import BackendError, reason

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from typing_extensions import TypeIs

    from .._typing import AsyncRedisClient, RedisClient

    Keys = tuple[bytes, ...]

SCRIPT = files(__name__.rpartition(".")[0]).joinpath("redis.lua").read_text(encoding="utf-8")
SHA = hashlib.sha1(SCRIPT.encode()).hexdigest()
_SHA = SHA.encode()  # bytes, like the keys: redis-py encodes every str argument on every call


class AsyncDriver(Protocol):
    """What the async bucket calls the script on; ``BlockingDriver`` is the sync twin.

    Each method raises ``BackendError`` when Redis, or the way to it, failed.
    """

    async def script(self, keys: Keys, args: list[bytes]) -> Any:
        """Run the script on ``keys`` and ``args`` and return its reply; a server that lost it
        (flushed cache, restart, failover) is sent the whole text, which it caches again."""

    async def load(self) -> None:
        """Put the script in the server's cache."""

    async def delete(self, *keys: bytes) -> None:
        """Delete ``keys``."""


def async_driver(client: AsyncRedisClient | RedisClient, owner: str) -> AsyncDriver:
    """The driver of the async bucket ``owner`` over ``client``.

    An async client is awaited natively; a sync one runs each call in a worker thread (the only
    way on an event loop the async client cannot use, such as trio's).
    """
    if is_async_client(client):
        return NativeDriver(client, owner)
    return ThreadedDriver(client, owner)


def driver(client: RedisClient, owner: str) -> BlockingDriver:
    """The driver of the sync bucket ``owner`` over ``client``, run in the calling thread."""
    if is_async_client(client):
        raise TypeError(
            f"redis must be a sync client for {owner}, got an async one: it needs the async twin "
            f"(AsyncRedisBucket), or give {owner} a sync client"
        )
    return BlockingDriver(client, owner)


def is_async_client(redis: object) -> TypeIs[AsyncRedisClient]:
    """Whether ``redis`` is an async client (its commands return awaitables)."""
    return inspect.iscoroutinefunction(getattr(type(redis), "execute_command", None))


# -- the twins: every Redis error leaves as BackendError, cancellation as itself


class NativeDriver:
    """An async client, awaited on the event loop."""

    def __init__(self, client: AsyncRedisClient, owner: str) -> None:
        self._client = client
        self._owner = owner
        self._no_script, self._closed, self._failures = _exceptions()

    async def script(self, keys: Keys, args: list[bytes]) -> Any:
        try:
            try:
                return await self._send(keys, args)
            except self._closed:
                # The connection closed under the call (the server's idle timeout, CLIENT KILL, a
                # failover), which redis-py retries only when configured to: once more, on a new
                # one. Safe to send twice: a call that records carries its call key.
                return await self._send(keys, args)
        except self._failures as error:
            raise _failed(self._owner, error) from error

    async def _send(self, keys: Keys, args: list[bytes]) -> Any:
        # execute_command: evalsha() is two more Python calls on the way to it, on every acquire.
        # Looked up on every call, never bound once: tools that count or trace commands replace it.
        execute: Any = self._client.execute_command  # typed in some client classes, not in others
        try:
            return await execute("EVALSHA", _SHA, len(keys), *keys, *args)
        except self._no_script:
            return await self._client.eval(SCRIPT, len(keys), *keys, *args)

    async def load(self) -> None:
        try:
            await self._client.script_load(SCRIPT)
        except self._failures as error:
            raise _failed(self._owner, error) from error

    async def delete(self, *keys: bytes) -> None:
        try:
            await self._client.delete(*keys)
        except self._failures as error:
            raise _failed(self._owner, error) from error


class BlockingDriver:
    """A sync client, used in the calling thread: the sync bucket's driver."""

    def __init__(self, client: RedisClient, owner: str) -> None:
        self._client = client
        self._owner = owner
        self._no_script, self._closed, self._failures = _exceptions()

    def script(self, keys: Keys, args: list[bytes]) -> Any:
        """The call of ``AsyncDriver.script``, in the calling thread (sent once more as there)."""
        try:
            try:
                return self._send(keys, args)
            except self._closed:
                return self._send(keys, args)
        except self._failures as error:
            raise _failed(self._owner, error) from error

    def _send(self, keys: Keys, args: list[bytes]) -> Any:
        execute: Any = self._client.execute_command
        try:
            return execute("EVALSHA", _SHA, len(keys), *keys, *args)
        except self._no_script:
            return self._client.eval(SCRIPT, len(keys), *keys, *args)

    def load(self) -> None:
        try:
            self._client.script_load(SCRIPT)
        except self._failures as error:
            raise _failed(self._owner, error) from error

    def delete(self, *keys: bytes) -> None:
        try:
            self._client.delete(*keys)
        except self._failures as error:
            raise _failed(self._owner, error) from error


class ThreadedDriver:
    """A sync client for the async bucket: each call runs in a worker thread."""

    def __init__(self, client: RedisClient, owner: str) -> None:
        blocking = BlockingDriver(client, owner)
        self._script, self._load, self._delete = blocking.script, blocking.load, blocking.delete

    async def script(self, keys: Keys, args: list[bytes]) -> Any:
        return await arun_blocking(self._script, keys, args)

    async def load(self) -> None:
        await arun_blocking(self._load)

    async def delete(self, *keys: bytes) -> None:
        await arun_blocking(self._delete, *keys)


# -- what the script reads (see redis.lua's header) ---------------------------------------------

# The script's op letters, and a request's time when the server's clock decides.
OPS = {
    "reserve": b"R",
    "waiting": b"W",
    "state": b"S",
    "release": b"X",
    "leak": b"L",
    "count": b"C",
    "peek": b"P",
    "pause_until": b"U",
    "paused_until": b"Q",
}
SERVER_CLOCK = float("nan")
_NUMBERS = struct.Struct("<dddI")


def request(t: float, n: int, extra: float, name: Any) -> bytes:
    """One request as the script unpacks it: time, weight and extra as doubles, then the name's
    length and bytes.

    One packed argument, not four of text: redis-py spends more per argument, and Lua more per
    number read from text, than Redis spends on the whole decision.
    """
    text: bytes = name if isinstance(name, bytes) else str(name).encode("utf-8", "surrogateescape")
    return _NUMBERS.pack(t, n, extra, len(text)) + text


def rule(rates: Sequence[tuple[int, int]]) -> bytes:
    """The rule every call's first request ends with, for rates of ``(limit, span)``.

    Spans, never intervals: the script computes with an interval's ms plus the stamp itself (see _window).
    """
    longest, room = max(stamps for _, stamps in rates), min(limit for limit, _ in rates)
    numbers = [longest, room, *(n for pair in rates for n in pair)]
    return struct.pack(f"<H{len(numbers)}d", len(rates), *numbers)


def state_key(bucket_key: str) -> bytes:
    """The key of the bucket's state, ``{T}:state:`` then the bucket's key, with a hash tag ``T``
    that puts it in the log's cluster slot, so one script may use both keys.

    ``T`` is the key's own hash tag, or for a key without one (hashed whole) the key itself; a
    key that cannot be quoted whole (empty, or with a ``}``) gets the first number hashing to its
    slot. Ending in the whole key keeps every bucket's state key its own.
    """
    key = bucket_key.encode("utf-8", "surrogateescape")
    start = key.find(b"{")
    end = key.find(b"}", start + 1)
    if start >= 0 and end > start + 1:
        tag = key[start + 1 : end]
    elif key and b"}" not in key:
        tag = key
    else:
        slot = _slot(key)
        tag = next(t for t in (str(n).encode() for n in itertools.count()) if _slot(t) == slot)
    return b"{" + tag + b"}:state:" + key


# -- helpers -------------------------------------------------------------------------------------


def _slot(key: bytes) -> int:
    """Redis Cluster's hash slot of a key that has no hash tag: CRC16 (XMODEM) mod 16384."""
    return binascii.crc_hqx(key, 0) % 16384


def _exceptions() -> tuple[type[Exception], type[Exception], tuple[type[Exception], ...]]:
    """redis-py's missing-script error, its closed-connection error, and every error that means Redis failed."""
    try:
        from redis.exceptions import ConnectionError, NoScriptError, RedisClusterException, RedisError
    except ImportError as error:
        raise ImportError("the Redis bucket needs redis-py: pip install 'pyrate-limiter[redis]'") from error
    return NoScriptError, ConnectionError, (RedisError, RedisClusterException, OSError)


def call_keys(state: bytes) -> Callable[[], bytes]:
    """A maker of keys no other call of any process will use, in the slot of the bucket's ``state`` key."""
    tag = state[: state.index(b"}") + 1] + b":call:"
    return lambda: tag + _PROCESS[0] + b"%x" % next(_CALLS)


# This process's part of every call key: random, and drawn again in a forked child; then a count
# shared by every bucket of the process (two buckets of one key must never share a call key).
_PROCESS = [os.urandom(8).hex().encode() + b":"]
_CALLS = itertools.count()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=lambda: _PROCESS.__setitem__(0, os.urandom(8).hex().encode() + b":"))


def _failed(owner: str, error: Exception) -> BackendError:
    # Certainly not recorded: the server answered with an error, or was never reached. A reply
    # lost on the way back (a timeout, a connection dropped mid-call) leaves it unknown.
    never_reached = "connecting to" in str(error) or isinstance(error, ConnectionRefusedError)
    recorded = False if never_reached or _answered(error) else None
    return BackendError(f"the Redis backend of {owner} failed: {reason(error)}", recorded=recorded)


def _answered(error: Exception) -> bool:
    from redis.exceptions import ResponseError

    return isinstance(error, ResponseError)
