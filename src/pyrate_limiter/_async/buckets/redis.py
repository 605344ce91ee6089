"""The Redis bucket: one sliding-window log per key, shared by every process and machine using it.

Every decision is one Lua script call (EVALSHA), so Redis makes it atomic across clients; the
script and the calls to it are in ``_drivers/redis.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..._batching import AsyncBatcher
from ..._drivers.redis import OPS, SERVER_CLOCK, async_driver, call_keys, request, rule, state_key
from ..._rate import RateItem, check_name, check_pause, check_rates
from ..._window import NEVER, UNSTORABLE, span
from .base import AsyncReservingBucket

if TYPE_CHECKING:
    from typing_extensions import Self

    from ..._rate import Rate, Verdict
    from ..._state import Usage
    from ..._typing import AsyncRedisClient, RedisClient


class AsyncRedisBucket(AsyncReservingBucket):
    """A bucket kept in Redis (one server or a cluster): many processes share it by ``bucket_key``.

    Each item is one sorted-set entry carrying its weight (items of one millisecond and name in a
    row share one), so a decision costs O(log n) in the entries kept, whatever the weight; an item
    stamped before newer entries (skewed clocks, queued reservations) also updates the running
    weight of those. Every key expires once idle for the
    longest interval (plus pending reservations and a second of slack).

    ``reserve`` decides at the server's time, or, for an item stamped so late that its window
    reaches behind entries already trimmed, at the earliest time the log can still vouch for;
    then its verdict says where it recorded the item (``Verdict``).

    :param redis: a sync or async client, single node or cluster. The async bucket runs a sync
        client's calls in a worker thread, so it works on event loops the async client cannot use.
    :param bucket_key: the shared name and, exactly, the key of the bucket's log (a sorted set);
        ``DEL bucket_key`` resets the bucket. Its state lives beside it, in the same cluster
        slot, at ``{bucket_key}:state:bucket_key`` (see ``state_key`` in ``_drivers/redis.py``).
    :param server_time: decide at the Redis server's clock instead of the items' timestamps, read
        inside the same script: for fleets whose clocks disagree. ``leak`` then uses it too.
    """

    def __init__(
        self, rates: list[Rate], redis: AsyncRedisClient | RedisClient, bucket_key: str, *, server_time: bool = False
    ) -> None:
        if not isinstance(bucket_key, str):
            raise TypeError(f"bucket_key must be a str, got {bucket_key!r}")
        self.rates = check_rates(rates)
        self.failing_rate = None
        self.redis = redis
        self.bucket_key = bucket_key
        self.server_time = server_time
        self._keys = (bucket_key.encode("utf-8", "surrogateescape"), state_key(bucket_key))
        self._call_key = call_keys(self._keys[1])  # what makes a call that records safe to send twice
        self._unstorable = max(UNSTORABLE, self.rates[-1].limit)
        self._rule = rule([(rate.limit, span(rate.interval)) for rate in self.rates])  # every call ends with it
        self._driver = async_driver(redis, f"RedisBucket (key {bucket_key!r})")
        self._script = self._driver.script  # bound once: every call goes through it
        self._reserving = AsyncBatcher(self._reserve_all)

    @classmethod
    async def init(
        cls, rates: list[Rate], redis: AsyncRedisClient | RedisClient, bucket_key: str, *, server_time: bool = False
    ) -> Self:
        """Make the bucket and load its script, as v3 did; fails now if Redis is unreachable."""
        bucket = cls(rates, redis, bucket_key, server_time=server_time)
        await bucket._driver.load()
        return bucket

    async def reserve(self, item: RateItem, max_delay: int | None) -> Verdict:
        if item.weight > self._unstorable:
            return NEVER, self.rates[0]
        # Concurrent reservations share one script call: the script decides them in order.
        t, extra = (SERVER_CLOCK if self.server_time else item.timestamp), (-1 if max_delay is None else max_delay)
        reply = await self._reserving.submit(request(t, item.weight, extra, item.name))
        if type(reply) is int:  # the usual acquire: recorded at that time, its stamp as a rule
            return (0, None) if reply == item.timestamp else (0, None, reply)
        # Decided at the server's clock, or later than its stamp when it came too late for that.
        delay, blocking, decided = int(reply[0]), int(reply[1]), int(reply[2])  # blocking: 1-based, 0: none
        if blocking:  # refused: the units each rate has left follow
            return delay, self.rates[blocking - 1], tuple(int(left) for left in reply[3:])
        return (delay, None) if decided == item.timestamp else (delay, None, decided + delay)

    async def waiting(self, item: RateItem) -> int:
        if item.weight > self._unstorable:
            return NEVER
        return int(await self._run("waiting", SERVER_CLOCK if self.server_time else item.timestamp, item.weight))

    async def state(self, item: RateItem) -> tuple[int, Usage]:
        # One script call reads it all; a weight past storing is asked about as 0, and never fits.
        weight = 0 if item.weight > self._unstorable else item.weight
        reply = await self._run("state", SERVER_CLOCK if self.server_time else item.timestamp, weight)
        usage = [(rate, int(reply[1 + 2 * i]), int(reply[2 + 2 * i])) for i, rate in enumerate(self.rates)]
        return (NEVER if weight != item.weight else int(reply[0])), usage

    async def release(self, item: RateItem) -> None:
        args = [OPS["release"] + request(item.timestamp, item.weight, -1, item.name) + self._rule]
        await self._script((*self._keys, self._call_key()), args)

    async def pause_until(self, name: str, until: int) -> int:
        """Admit nothing under ``name`` before ``until`` (ms on the items' clock) for every caller
        sharing the backend; a later end already set stays. :return: the end now in force.

        One pause for the whole bucket, kept in its state (so every decision reads it in the same
        call) until ``until``, whatever the keys' idle expiry; ``flush`` and ``DEL bucket_key``
        forget it. With ``server_time``, ``until`` is on the Redis server's clock, as every decision is.
        The script computes in doubles: an end past 2**53 ms (some 285 000 years) is kept rounded.
        """
        check_pause(name, until)
        # The time tells the script how long to keep the keys: the server's, or 0 (not known here).
        return int(await self._run("pause_until", SERVER_CLOCK if self.server_time else 0, 0, until))

    async def paused_until(self, name: str) -> int:
        """When the pause on ``name`` ends (ms on the items' clock); 0 when none was set (or since flush)."""
        check_name(name)
        return int(await self._run("paused_until", 0))

    async def leak(self, current_timestamp: int) -> int:
        """Trim what cannot count at ``current_timestamp`` (with ``server_time``: at the server's clock)."""
        return int(await self._run("leak", SERVER_CLOCK if self.server_time else current_timestamp))

    async def flush(self) -> None:
        await self._driver.delete(*self._keys)
        self.failing_rate = None

    async def count(self) -> int:
        return int(await self._run("count", 0))

    async def peek(self, index: int) -> RateItem | None:
        found = await self._run("peek", 0, index)
        if found is None:
            return None
        name, timestamp = found
        return RateItem(name.decode("utf-8", "surrogateescape") if isinstance(name, bytes) else name, int(timestamp))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.rates!r}, bucket_key={self.bucket_key!r})"

    # -- one script call per operation -------------------------------------------------------

    async def _run(self, op: str, t: float, n: int = 0, extra: float = -1, name: Any = "") -> Any:
        args = [OPS[op] + request(t, n, extra, name) + self._rule]
        return await self._script(self._keys, args)

    async def _reserve_all(self, requests: list[bytes]) -> list[Any]:
        requests[0] = OPS["reserve"] + requests[0] + self._rule  # the batch's own list: sent, then dropped
        reply = await self._script((*self._keys, self._call_key()), requests)
        if type(reply) is int:  # the usual acquire's answer
            return [reply]
        words, answers, i, rates = reply.split(), [], 0, len(self.rates)
        while i < len(words):  # "delay rate-index time", a refusal's followed by a number per rate
            size = 3 if words[i + 1] == b"0" else 3 + rates
            answers.append(words[i : i + size])
            i += size
        return answers
