"""The Redis bucket: one sliding-window log per key, shared by every process and machine using it.

Every decision is one Lua script call (EVALSHA), so Redis makes it atomic across clients.
"""

from __future__ import annotations

import hashlib
import inspect
from typing import TYPE_CHECKING, Any

from ..._concurrency import aresolve, arun_blocking
from ..._errors import BackendError
from ..._rate import RateItem, check_rates
from .base import AsyncAbstractBucket

if TYPE_CHECKING:
    from typing_extensions import Self

    from ..._rate import Rate
    from ..._typing import AsyncRedisClient, RedisClient

# The rule of ``_window.py`` run server-side. Keys share the bucket's hash tag:
#   KEYS[1] ts   sorted set, member -> timestamp   (finds P(x): the last entry at or before x)
#   KEYS[2] cum  sorted set, member -> running weight (finds the first entry reaching a weight)
#   KEYS[3] meta hash: base (weight of trimmed entries), trimmed (timestamp of the newest trimmed
#           entry), seq (member counter)
# A member is "<12 hex seq>:<weight>:<name>": the fixed-width seq keeps entries with one timestamp
# in insertion order and makes every member unique. ARGV: op, t ('' = the server's clock),
# weight or index, max_delay ('' = none), name, then limit and interval of every rate.
SCRIPT = r"""
local ts_key, cum_key, meta_key = KEYS[1], KEYS[2], KEYS[3]
local op, t, n, name = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[5]
if not t then
  if redis.replicate_commands then redis.replicate_commands() end
  local now = redis.call('TIME')
  t = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
end
local rates, longest = {}, 0
for i = 6, #ARGV, 2 do
  local interval = tonumber(ARGV[i + 1])
  rates[#rates + 1] = {tonumber(ARGV[i]), interval}
  if interval > longest then longest = interval end
end

local function int(x) return string.format('%d', x) end
local function base() return tonumber(redis.call('HGET', meta_key, 'base') or 0) end
local function total(b)
  local last = redis.call('ZRANGE', cum_key, -1, -1, 'WITHSCORES')
  if last[2] then return tonumber(last[2]) end
  return b
end
local function upto(x, b)  -- P(x): the weight recorded at or before x
  local m = redis.call('ZREVRANGEBYSCORE', ts_key, int(x), '-inf', 'LIMIT', 0, 1)[1]
  if m then return tonumber(redis.call('ZSCORE', cum_key, m)) end
  return b
end
local function trim(horizon)  -- drop entries at or before horizon; return the new base
  local b = base()
  local first = redis.call('ZRANGE', ts_key, 0, 0, 'WITHSCORES')
  if not first[2] or tonumber(first[2]) > horizon then return b end
  local last = redis.call('ZREVRANGEBYSCORE', ts_key, int(horizon), '-inf', 'WITHSCORES', 'LIMIT', 0, 1)
  b = tonumber(redis.call('ZSCORE', cum_key, last[1]))
  redis.call('ZREMRANGEBYSCORE', ts_key, '-inf', int(horizon))
  redis.call('ZREMRANGEBYSCORE', cum_key, '-inf', int(b))
  redis.call('HSET', meta_key, 'base', int(b), 'trimmed', last[2])
  return b
end
local function settle()
  -- P(x) is exact only from the newest trimmed entry on: an item stamped so late that a rate's
  -- window would reach behind it (another client decided later and trimmed) is decided, and
  -- booked, at the earliest time the log still vouches for.
  local trimmed = tonumber(redis.call('HGET', meta_key, 'trimmed'))
  if trimmed and trimmed + longest > t then t = trimmed + longest end
end
local function earliest(w, b)  -- the earliest time >= t the item fits; the rate that pushed it
  local sum, at, blocking = total(b), t, 0
  for i, rate in ipairs(rates) do
    local need = sum + w - rate[1]
    if need > b then
      if w > rate[1] then return -1, i end
      local m = redis.call('ZRANGEBYSCORE', cum_key, int(need), '+inf', 'LIMIT', 0, 1)[1]
      local fits = tonumber(redis.call('ZSCORE', ts_key, m)) + rate[2]
      if fits > at then at, blocking = fits, i end
    end
  end
  return at, blocking
end
local function record(at, w, b)
  if w <= 0 then return end  -- weight 0 changes no window: nothing to keep
  local member = string.format('%012x', redis.call('HINCRBY', meta_key, 'seq', 1)) .. ':' .. int(w) .. ':' .. name
  local before = upto(at, b)
  -- Entries after `at` (reservations, or a skewed clock's future) count this weight too.
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', ts_key, '(' .. int(at), '+inf')) do
    redis.call('ZINCRBY', cum_key, int(w), m)
  end
  redis.call('ZADD', ts_key, int(at), member)
  redis.call('ZADD', cum_key, int(before + w), member)
  local newest = tonumber(redis.call('ZRANGE', ts_key, -1, -1, 'WITHSCORES')[2])
  -- Idle buckets vanish; a second of slack covers clocks of clients that drift apart.
  local ttl = math.max(newest - t, 0) + longest + 1000
  for _, key in ipairs(KEYS) do redis.call('PEXPIRE', key, int(ttl)) end
end

if op == 'reserve' then
  settle()
  local b = trim(t - longest)
  local at, blocking = earliest(n, b)
  if blocking == 0 then
    record(t, n, b)
    return {0, 0, t}
  end
  local max_delay = tonumber(ARGV[4])
  if at ~= -1 and max_delay and at - t <= max_delay then
    record(at, n, b)
    return {at - t, 0, t}
  end
  if at == -1 then return {-1, blocking, t} end
  return {at - t, blocking, t}
elseif op == 'waiting' then
  local stamp = t  -- waiting counts from the item's own stamp: nothing is recorded or restamped
  settle()
  local at, blocking = earliest(n, base())
  if blocking == 0 then return 0 end
  if at == -1 then return -1 end
  return at - stamp
elseif op == 'release' then
  local suffix = ':' .. ARGV[4] .. ':' .. name
  local found = redis.call('ZRANGEBYSCORE', ts_key, int(t), int(t))
  for i = #found, 1, -1 do
    local m = found[i]
    if string.sub(m, 13) == suffix then
      local rank = redis.call('ZRANK', ts_key, m)
      for _, later in ipairs(redis.call('ZRANGE', ts_key, rank + 1, -1)) do
        redis.call('ZINCRBY', cum_key, '-' .. ARGV[4], later)
      end
      redis.call('ZREM', ts_key, m)
      redis.call('ZREM', cum_key, m)
      return 1
    end
  end
  return 0
elseif op == 'leak' then
  local b = base()
  return trim(t - longest) - b
elseif op == 'count' then
  local b = base()
  return total(b) - b
elseif op == 'peek' then
  local b = base()
  local unit = total(b) - n
  if n < 0 or unit <= b then return nil end
  local m = redis.call('ZRANGEBYSCORE', cum_key, int(unit), '+inf', 'LIMIT', 0, 1)[1]
  local sep = string.find(m, ':', 14, true)
  return {string.sub(m, sep + 1), tonumber(redis.call('ZSCORE', ts_key, m))}
end
return redis.error_reply('pyrate_limiter: unknown op ' .. op)
"""
SHA = hashlib.sha1(SCRIPT.encode()).hexdigest()


class AsyncRedisBucket(AsyncAbstractBucket):
    """A bucket kept in Redis (one server or a cluster): many processes share it by ``bucket_key``.

    Each item is one sorted-set entry carrying its weight, so a decision costs O(log n) in the
    entries kept, whatever the weight; an item stamped before newer entries (skewed clocks, queued
    reservations) also updates the running weight of those. Every key expires once idle for the
    longest interval (plus pending reservations and a second of slack).

    :param redis: a sync or async client, single node or cluster. The async bucket runs a sync
        client's calls in a worker thread, so it works on event loops the async client cannot use.
    :param bucket_key: the shared name; the bucket's keys are ``{bucket_key}:ts``, ``:cum`` and
        ``:meta`` (one hash tag, so they live on one cluster node).
    :param server_time: decide at the Redis server's clock instead of the items' timestamps, read
        inside the same script: for fleets whose clocks disagree. ``leak`` then uses it too.

    ``reserve`` restamps the item with the time it was decided at: the server's, or, for an item
    stamped so late that its window reaches behind entries already trimmed, the earliest time
    the log can still vouch for.
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
        tag = "{" + bucket_key + "}"
        self._keys = (f"{tag}:ts", f"{tag}:cum", f"{tag}:meta")
        self._rates = [str(number) for rate in self.rates for number in (rate.limit, rate.interval)]
        # Decided once: an async client is awaited, a sync one runs in a worker thread.
        self._native = is_async_client(redis)
        self._client: Any = redis  # the kind _native says; each helper below names its type
        try:
            from redis.exceptions import NoScriptError, RedisClusterException, RedisError
        except ImportError as error:
            raise ImportError("the Redis bucket needs redis-py: pip install 'pyrate-limiter[redis]'") from error

        self._failures = (RedisError, RedisClusterException, OSError)
        self._no_script = NoScriptError

    @classmethod
    async def init(
        cls, rates: list[Rate], redis: AsyncRedisClient | RedisClient, bucket_key: str, *, server_time: bool = False
    ) -> Self:
        """Make the bucket and load its script, as v3 did; fails now if Redis is unreachable."""
        bucket = cls(rates, redis, bucket_key, server_time=server_time)
        await bucket._call(_load, _blocking_load)
        return bucket

    async def put(self, item: RateItem) -> bool:
        _, self.failing_rate = await self.reserve(item, None)
        return self.failing_rate is None

    async def reserve(self, item: RateItem, max_delay: int | None) -> tuple[int, Rate | None]:
        delay, index, now = await self._run(
            "reserve", self._now(item), item.weight, "" if max_delay is None else max_delay, item.name
        )
        # Restamped with the time it was decided at: the server's clock, or later than its own
        # stamp when it came too late for that. The limiter sleeps and releases relative to it.
        item.timestamp = int(now)
        return int(delay), (self.rates[index - 1] if index else None)

    async def waiting(self, item: RateItem) -> int:
        return int(await self._run("waiting", self._now(item), item.weight))

    async def release(self, item: RateItem) -> None:
        await self._run("release", item.timestamp, 0, item.weight, item.name)

    async def leak(self, current_timestamp: int | None = None) -> int:
        if self.server_time:
            return int(await self._run("leak", ""))
        if current_timestamp is None:
            return 0  # v3: no time given, nothing is known to be outdated
        return int(await self._run("leak", current_timestamp))

    async def flush(self) -> None:
        await self._call(_delete, _blocking_delete, *self._keys)
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

    def _now(self, item: RateItem) -> int | str:
        return "" if self.server_time else item.timestamp

    async def _run(self, op: str, t: int | str, n: int = 0, extra: float | str = "", name: Any = "") -> Any:
        # Numbers as plain decimal text: redis-py would send an IntEnum (Duration) as its repr.
        args = [op, _decimal(t), _decimal(n), _decimal(extra), name if isinstance(name, str | bytes) else str(name)]
        return await self._call(_script, _blocking_script, self._keys, args + self._rates)

    async def _call(self, native: Any, blocking: Any, *args: Any) -> Any:
        try:
            if self._native:
                # resolve: the sync twin, handed an async client, refuses the awaitable it gets.
                return await aresolve(native(self._client, self._no_script, *args))
            return await arun_blocking(blocking, self._client, self._no_script, *args)
        except self._failures as error:
            raise BackendError(f"Redis backend failed for bucket {self.bucket_key!r}: {error!r}") from error


def _decimal(value: float | str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, float) and not value.is_integer():
        return repr(value)  # Lua's tonumber reads these, "inf" included
    return str(int(value))


def is_async_client(redis: object) -> bool:
    """Whether ``redis`` is an async client (its commands return awaitables)."""
    return inspect.iscoroutinefunction(getattr(type(redis), "execute_command", None))


# Each driver call twice: awaited on an async client, or run in a worker thread on a sync one.


async def _script(redis: AsyncRedisClient, no_script: type[Exception], keys: tuple[str, ...], args: list[Any]) -> Any:
    try:
        return await redis.evalsha(SHA, len(keys), *keys, *args)
    except no_script:
        # Flushed cache, restarted server or failover: EVAL runs the script and caches it again.
        return await redis.eval(SCRIPT, len(keys), *keys, *args)


def _blocking_script(redis: RedisClient, no_script: type[Exception], keys: tuple[str, ...], args: list[Any]) -> Any:
    try:
        return redis.evalsha(SHA, len(keys), *keys, *args)
    except no_script:
        return redis.eval(SCRIPT, len(keys), *keys, *args)


async def _load(redis: AsyncRedisClient, no_script: type[Exception]) -> None:
    await redis.script_load(SCRIPT)


def _blocking_load(redis: RedisClient, no_script: type[Exception]) -> None:
    redis.script_load(SCRIPT)


async def _delete(redis: AsyncRedisClient, no_script: type[Exception], *keys: str) -> None:
    await redis.delete(*keys)


def _blocking_delete(redis: RedisClient, no_script: type[Exception], *keys: str) -> None:
    redis.delete(*keys)
