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
from .base import AsyncReservingBucket

if TYPE_CHECKING:
    from typing_extensions import Self

    from ..._rate import Rate
    from ..._typing import AsyncRedisClient, RedisClient

# The rule of ``_window.py`` run server-side. Both keys share the bucket's hash tag:
#   KEYS[1] log  sorted set scored by the running weight ``cum``; timestamps rise with it, so ranks
#           are in timestamp order too. A member is the timestamp in 6 bytes, then "/name" only for
#           a name other than the bucket's first one; items of one time and name recorded one after
#           the other share an entry (6-byte members keep Redis at ~105 bytes an entry). When that
#           time and name are taken further back, '#' and a 4-byte sequence number follow the time.
#   KEYS[2] meta hash: b (weight of trimmed entries), tr (timestamp of the newest trimmed entry),
#           s (sequence), to (total), ne (newest timestamp), ol (oldest timestamp), n (first name).
# ARGV: op, t ('' = the server's clock), weight or index, max_delay ('' = none), name, then limit
# and interval of every rate.
SCRIPT = r"""
local log_key, meta_key = KEYS[1], KEYS[2]
local op, t, n, name = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[5]
if not t then
  if redis.replicate_commands then redis.replicate_commands() end
  local now = redis.call('TIME')
  t = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
end
local rates, longest, room = {}, 0, math.huge
for i = 6, #ARGV, 2 do
  local limit, interval = tonumber(ARGV[i]), tonumber(ARGV[i + 1])
  rates[#rates + 1] = {limit, interval}
  if interval > longest then longest = interval end
  if limit < room then room = limit end
end

local function int(x) return string.format('%d', x) end
-- The whole state but the log, read once: base, trimmed, seq, total, newest, oldest, default name.
local m = redis.call('HMGET', meta_key, 'b', 'tr', 's', 'to', 'ne', 'ol', 'n')
local base, trimmed, seq = tonumber(m[1]) or 0, tonumber(m[2]), tonumber(m[3]) or 0
local total, newest, oldest, default = tonumber(m[4]) or base, tonumber(m[5]), tonumber(m[6]), m[7]
local function stamp(member) return (struct.unpack('>i6', member)) end
local function owner(member)  -- the name an entry was recorded under
  local slash = 7  -- after the timestamp, or after '#' and a sequence number
  if string.sub(member, 7, 7) == '#' then slash = 12 end
  if #member >= slash then return string.sub(member, slash + 1) end
  return default
end
local function entry(rank)  -- timestamp and cum of the entry at rank
  local e = redis.call('ZRANGE', log_key, rank, rank, 'WITHSCORES')
  return stamp(e[1]), tonumber(e[2])
end
local function last_upto(x)  -- rank of the last entry stamped at or before x (-1: none)
  local lo, hi = 0, redis.call('ZCARD', log_key) - 1
  local found = -1
  while lo <= hi do
    local mid = math.floor((lo + hi) / 2)
    if entry(mid) <= x then found, lo = mid, mid + 1 else hi = mid - 1 end
  end
  return found
end
local function first_ts()
  local e = redis.call('ZRANGE', log_key, 0, 0)[1]
  if e then return stamp(e) end
  return nil
end
local function trim(horizon)  -- drop entries at or before horizon
  if not oldest or oldest > horizon then return end
  -- Usually only the oldest entry or two are out: look there before searching the whole log.
  local second = redis.call('ZRANGE', log_key, 1, 1)[1]
  local r = 0
  if second and stamp(second) <= horizon then r = last_upto(horizon) end
  local ts, cum = entry(r)
  redis.call('ZREMRANGEBYRANK', log_key, 0, r)
  base, trimmed, oldest = cum, ts, first_ts()
  if oldest then
    redis.call('HSET', meta_key, 'b', int(base), 'tr', int(trimmed), 'ol', int(oldest))
  else
    redis.call('HSET', meta_key, 'b', int(base), 'tr', int(trimmed))
    redis.call('HDEL', meta_key, 'ol')
  end
end
local function settle()
  -- P(x) is exact only from the newest trimmed entry on: an item stamped so late that a rate's
  -- window would reach behind it (another client decided later and trimmed) is decided, and
  -- booked, at the earliest time the log still vouches for.
  if trimmed and trimmed + longest > t then t = trimmed + longest end
end
local function earliest(w)  -- the earliest time >= t the item fits; the rate that pushed it
  if total - base + w <= room then return t, 0 end
  local at, blocking = t, 0
  for i, rate in ipairs(rates) do
    local need = total + w - rate[1]
    if need > base then
      if w > rate[1] then return -1, i end
      local e = redis.call('ZRANGEBYSCORE', log_key, int(need), '+inf', 'LIMIT', 0, 1)[1]
      local fits = stamp(e) + rate[2]
      if fits > at then at, blocking = fits, i end
    end
  end
  return at, blocking
end
local function record(at, w)
  if w <= 0 then return end  -- weight 0 changes no window: nothing to keep
  if not default then default = name end
  local member = struct.pack('>i6', at)
  -- A name is kept in the entry only when it is not the bucket's first one.
  local suffix = ''
  if name ~= default then suffix = '/' .. name end
  local r, before, last = -1, total, nil
  if newest and at <= newest then
    local e
    if at == newest then
      e = redis.call('ZRANGE', log_key, -1, -1, 'WITHSCORES')
    else
      r = last_upto(at)
      e = r >= 0 and redis.call('ZRANGE', log_key, r, r, 'WITHSCORES') or {}
    end
    last, before = e[1], tonumber(e[2]) or base
  end
  local later = {}
  if newest and at < newest then later = redis.call('ZRANGE', log_key, r + 1, -1) end
  -- Entries after `at` (reservations, or a skewed clock's future) count this weight too.
  for i = #later, 1, -1 do redis.call('ZINCRBY', log_key, int(w), later[i]) end
  if last and stamp(last) == at and owner(last) == name then
    -- Right after an entry of the same time and name: one entry of the summed weight answers
    -- every question the same way, and keeps the bucket's memory per entry, not per item.
    redis.call('ZINCRBY', log_key, int(w), last)
  else
    member = member .. suffix
    if newest and at <= newest and redis.call('ZSCORE', log_key, member) then
      -- That time and name are taken further back: a sequence number keeps this one apart.
      seq = (seq + 1) % 4294967296
      member = struct.pack('>i6', at) .. '#' .. struct.pack('>I4', seq) .. suffix
    end
    redis.call('ZADD', log_key, int(before + w), member)
  end
  if not newest or at > newest then newest = at end
  if not oldest or at < oldest then oldest = at end
  total = total + w
  redis.call('HSET', meta_key, 's', int(seq), 'to', int(total), 'ne', int(newest), 'ol', int(oldest), 'n', default)
  -- Idle buckets vanish; a second of slack covers clocks of clients that drift apart.
  local ttl = math.max(newest - t, 0) + longest + 1000
  for _, key in ipairs(KEYS) do redis.call('PEXPIRE', key, int(ttl)) end
end

if op == 'reserve' then
  settle()
  if oldest and oldest <= t - longest then trim(t - longest) end
  local at, blocking = earliest(n)
  if blocking == 0 then
    record(t, n)
    return {0, 0, t}
  end
  local max_delay = tonumber(ARGV[4])
  if at ~= -1 and max_delay and at - t <= max_delay then
    record(at, n)
    return {at - t, 0, t}
  end
  if at == -1 then return {-1, blocking, t} end
  return {at - t, blocking, t}
elseif op == 'waiting' then
  local own = t  -- waiting counts from the item's own stamp: nothing is recorded or restamped
  settle()
  local at, blocking = earliest(n)
  if blocking == 0 then return 0 end
  if at == -1 then return -1 end
  return at - own
elseif op == 'release' then
  -- The newest entry at t under that name holding at least w: merged entries give part back.
  local w = tonumber(ARGV[4])
  local r, found, cum = last_upto(t), nil, nil
  local e = r >= 0 and redis.call('ZRANGE', log_key, r, r, 'WITHSCORES') or {}
  while e[1] and stamp(e[1]) == t do
    local prev = {}
    if r > 0 then prev = redis.call('ZRANGE', log_key, r - 1, r - 1, 'WITHSCORES') end
    local own = tonumber(e[2]) - (tonumber(prev[2]) or base)
    if owner(e[1]) == name and own >= w then
      found, cum = e[1], own
      break
    end
    r, e = r - 1, prev
  end
  if not found then return 0 end
  local later = redis.call('ZRANGE', log_key, '(' .. redis.call('ZSCORE', log_key, found), '+inf', 'BYSCORE')
  if cum == w then redis.call('ZREM', log_key, found) else redis.call('ZINCRBY', log_key, '-' .. ARGV[4], found) end
  for i = 1, #later do redis.call('ZINCRBY', log_key, '-' .. ARGV[4], later[i]) end
  total = total - w
  oldest = first_ts()
  if oldest then
    redis.call('HSET', meta_key, 'to', int(total), 'ol', int(oldest))
  else
    redis.call('HSET', meta_key, 'to', int(total))
    redis.call('HDEL', meta_key, 'ol')
  end
  return 1
elseif op == 'leak' then
  local b = base
  trim(t - longest)
  return base - b
elseif op == 'count' then
  return total - base
elseif op == 'peek' then
  local unit = total - n
  if n < 0 or unit <= base then return nil end
  local e = redis.call('ZRANGEBYSCORE', log_key, int(unit), '+inf', 'LIMIT', 0, 1)[1]
  return {owner(e), stamp(e)}
end
return redis.error_reply('pyrate_limiter: unknown op ' .. op)
"""
SHA = hashlib.sha1(SCRIPT.encode()).hexdigest()


class AsyncRedisBucket(AsyncReservingBucket):
    """A bucket kept in Redis (one server or a cluster): many processes share it by ``bucket_key``.

    Each item is one sorted-set entry carrying its weight (items of one millisecond and name in a
    row share one), so a decision costs O(log n) in the entries kept, whatever the weight; an item
    stamped before newer entries (skewed clocks, queued reservations) also updates the running
    weight of those. Every key expires once idle for the
    longest interval (plus pending reservations and a second of slack).

    :param redis: a sync or async client, single node or cluster. The async bucket runs a sync
        client's calls in a worker thread, so it works on event loops the async client cannot use.
    :param bucket_key: the shared name; the bucket's keys are ``{bucket_key}:log`` and
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
        self._keys = (f"{tag}:log", f"{tag}:meta")
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
