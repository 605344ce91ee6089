"""The Redis bucket: one sliding-window log per key, shared by every process and machine using it.

Every decision is one Lua script call (EVALSHA), so Redis makes it atomic across clients.
"""

from __future__ import annotations

import binascii
import hashlib
import inspect
import itertools
import struct
from typing import TYPE_CHECKING, Any

from ..._batching import AsyncBatcher
from ..._concurrency import aresolve, arun_blocking
from ..._errors import BackendError, reason
from ..._rate import RateItem, check_rates
from ..._window import NEVER, UNSTORABLE, span
from .base import AsyncReservingBucket

if TYPE_CHECKING:
    from typing_extensions import Self

    from ..._rate import Rate
    from ..._typing import AsyncRedisClient, RedisClient

# The rule of ``_window.py`` run server-side, on two keys in one hash slot (see state_key):
#   KEYS[1] log    the user's key, as v3 kept it: deleting it resets the bucket, whatever the state
#           says. A sorted set scored by the running weight ``cum``; timestamps rise with it, so ranks
#           are in timestamp order too. A member is the timestamp in 6 bytes, then "/name" only for
#           a name other than the bucket's first one; items of one time and name recorded one after
#           the other share an entry (6-byte members keep Redis at ~105 bytes an entry). When that
#           time and name are taken further back, '#' and a 4-byte sequence number follow the time.
#   KEYS[2] state  one string, read and written once per call: eight doubles (exact for these
#           integers, and cheaper for Lua than text) base (weight of trimmed entries), trimmed
#           (newest trimmed timestamp), seq, total, newest, oldest, expiry (when both keys expire,
#           on the clients' clock), the first name's length (-1: none yet); then the first name and
#           the newest entry's member ('' = look it up).
# ARGV: one request each, packed: doubles time, weight (or peek's index) and max_delay (time NaN:
# the server's clock; max_delay -1: none), the name's length (4 bytes) and bytes. The first one
# comes between the op's letter and the rule: the number of rates (2 bytes), then doubles: longest
# span, smallest limit, and limit and span of each rate (a span is the interval + 1: see _window).
# Only reserve (R) takes several requests: it decides them in order, each as if alone, and answers
# "delay rate-index time" for each, in one string.
# Every argument, reply element and number parsed from text costs, on every call: the usual
# acquire sends one argument, runs GET, ZADD (or ZINCRBY) and SET, gets an integer back, and
# renews the keys' expiry about once per longest interval.
SCRIPT = r"""
local log_key, state_key = KEYS[1], KEYS[2]
local saved = redis.call('GET', state_key)
-- A state that speaks of a log (its oldest entry, the 6th double, is a time) whose key is gone:
-- someone deleted the key to reset the limit, as v3 users do. Start afresh, floor and all.
if saved and redis.call('EXISTS', log_key) == 0 and struct.unpack('<d', saved, 41) < 4503599627370496 then
  saved = nil
end

-- The usual acquire first, before anything else is set up: one item stamped at or after the
-- newest entry, fitting the smallest limit, with nothing to trim and the keys' expiry far
-- enough ahead. Its answer is the time it was recorded at, an integer. Whatever else falls
-- through to the whole rule below, which decides it the same way.
repeat  -- left by break, as Lua 5.1 has no goto; a function would cost a closure per call
  if not saved or #ARGV ~= 1 then break end
  local op, t, w, _, name, _, longest, room = struct.unpack('<c1dddI4c0Hdd', ARGV[1])
  if op ~= 'R' or t ~= t then break end
  local base, trimmed, seq, total, newest, oldest, expiry, dl, at = struct.unpack('<dddddddd', saved)
  if dl < 0 or w <= 0 or t < newest or t < trimmed + longest or oldest <= t - longest
    or total - base + w > room or expiry < t + longest + 1000 then break end
  local default, member = string.sub(saved, at, at + dl - 1), struct.pack('>i6', t)
  if name ~= default then member = member .. '/' .. name end
  if t > newest then
    redis.call('ZADD', log_key, string.format('%d', total + w), member)
  elseif member == string.sub(saved, at + dl) then
    redis.call('ZINCRBY', log_key, string.format('%d', w), member)
  else
    break
  end
  redis.call('SET', state_key, struct.pack('<ddddddddc0c0', base, trimmed, seq, total + w, t, oldest, expiry, dl,
    default, member), 'KEEPTTL')
  return t
until true

local op, t1, w1, max_delay1, name1, count, longest, room, rates_at = struct.unpack('<c1dddI4c0Hdd', ARGV[1])
local function request(j)  -- time, weight, max_delay (nil: none), name
  local t, w, max_delay, name = t1, w1, max_delay1, name1
  if j > 1 then t, w, max_delay, name = struct.unpack('<dddI4c0', ARGV[j]) end
  if max_delay < 0 then max_delay = nil end
  return t, w, max_delay, name
end
local NONE = 4503599627370496  -- 2^52: later than any time, and -NONE earlier than any

local base, trimmed, seq, total, newest, oldest, expiry = 0, -NONE, 0, 0, -NONE, NONE, -NONE
local default, last = nil, ''
if saved then
  local dl, at
  base, trimmed, seq, total, newest, oldest, expiry, dl, at = struct.unpack('<dddddddd', saved)
  if dl >= 0 then default = string.sub(saved, at, at + dl - 1) end
  last = string.sub(saved, at + math.max(dl, 0))
else
  redis.call('DEL', log_key)  -- a log without its state cannot be read: start afresh
end
local changed, server_now = false, nil

local function time_of(t)  -- a request's time: its own, or (NaN) the server's
  if t == t then return t end
  if not server_now then
    if redis.replicate_commands then redis.replicate_commands() end
    local now = redis.call('TIME')
    server_now = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
  end
  return server_now
end

local function append(at, w, name)
  -- Record an item as the newest entry, or merge it into the newest entry when that has the same
  -- time and name: the usual cases. False (and nothing done) when neither applies.
  if not default then default = name end
  -- A name is kept in the entry only when it is not the bucket's first one.
  local member = struct.pack('>i6', at)
  if name ~= default then member = member .. '/' .. name end
  if at == newest and member == last then
    -- One entry of the summed weight answers every question the same way, and keeps the
    -- bucket's memory per entry, not per item.
    redis.call('ZINCRBY', log_key, string.format('%d', w), last)
  elseif at > newest then
    if oldest == NONE then oldest, expiry = at, -NONE end  -- a new log: it needs its expiry
    redis.call('ZADD', log_key, string.format('%d', total + w), member)
    newest, last = at, member
  else
    return false
  end
  total, changed = total + w, true
  return true
end

-- The rest of the rule, made only when a call needs it: each closure costs Redis time per call.
local function make_rule()
  local limits, spans = {}, {}
  local at = rates_at
  for i = 1, count do
    limits[i], spans[i], at = struct.unpack('<dd', ARGV[1], at)
  end
  local function int(x) return string.format('%d', x) end
  local function stamp(member) return (struct.unpack('>i6', member)) end
  local function owner(member)  -- the name an entry was recorded under
    local slash = 7  -- after the timestamp, or after '#' and a sequence number
    if string.sub(member, 7, 7) == '#' then slash = 12 end
    if #member >= slash then return string.sub(member, slash + 1) end
    return default
  end
  local function entry(rank)  -- member, timestamp and cum of the entry at rank
    local e = redis.call('ZRANGE', log_key, rank, rank, 'WITHSCORES')
    if not e[1] then return nil, nil, base end
    return e[1], stamp(e[1]), tonumber(e[2])
  end
  local function last_upto(x)  -- rank of the last entry stamped at or before x (-1: none)
    local lo, hi = 0, redis.call('ZCARD', log_key) - 1
    local found = -1
    while lo <= hi do
      local mid = math.floor((lo + hi) / 2)
      local _, ts = entry(mid)
      if ts <= x then found, lo = mid, mid + 1 else hi = mid - 1 end
    end
    return found
  end
  local function refresh_oldest()
    local _, ts = entry(0)
    if ts then oldest = ts else oldest, last, expiry = NONE, '', -NONE end  -- the log is gone
  end
  local r = {stamp = stamp, owner = owner, int = int, entry = entry, last_upto = last_upto,
    refresh_oldest = refresh_oldest}
  function r.trim(horizon)  -- drop entries at or before horizon
    if oldest > horizon then return end
    -- Usually only the oldest entry or two are out: look there before searching the whole log.
    local _, second = entry(1)
    local rank = 0
    if second and second <= horizon then rank = last_upto(horizon) end
    local _, ts, cum = entry(rank)
    redis.call('ZREMRANGEBYRANK', log_key, 0, rank)
    base, trimmed, changed = cum, ts, true
    refresh_oldest()
  end
  function r.earliest(t, w)  -- the earliest time >= t the item fits; the rate that pushed it
    if total - base + w <= room then return t, 0 end
    local at, blocking = t, 0
    for i = 1, #limits do
      local need = total + w - limits[i]
      if need > base then
        if w > limits[i] then return -1, i end
        local e = redis.call('ZRANGEBYSCORE', log_key, int(need), '+inf', 'LIMIT', 0, 1)[1]
        local fits = stamp(e) + spans[i]
        if fits > at then at, blocking = fits, i end
      end
    end
    return at, blocking
  end
  function r.record(at, w, name)
    if w <= 0 then return end  -- weight 0 changes no window: nothing to keep
    if at >= newest and append(at, w, name) then return end
    if oldest == NONE then expiry = -NONE end
    local suffix = ''
    if name ~= default then suffix = '/' .. name end
    if at == newest and last == '' then last = entry(-1) or '' end
    local member, before = last, total
    if at < newest then
      -- Entries after `at` (reservations, or a skewed clock's future) count this weight too.
      local rank = last_upto(at)
      local later = redis.call('ZRANGE', log_key, rank + 1, -1)
      for i = #later, 1, -1 do redis.call('ZINCRBY', log_key, int(w), later[i]) end
      member, before = nil, base
      if rank >= 0 then
        local _
        member, _, before = entry(rank)
      end
    end
    if member and member ~= '' and stamp(member) == at and owner(member) == name then
      redis.call('ZINCRBY', log_key, int(w), member)  -- right after one of its time and name: merged
    else
      member = struct.pack('>i6', at) .. suffix
      if redis.call('ZSCORE', log_key, member) then
        -- That time and name are taken further back: a sequence number keeps this one apart.
        seq = (seq + 1) % 4294967296
        member = struct.pack('>i6', at) .. '#' .. struct.pack('>I4', seq) .. suffix
      end
      redis.call('ZADD', log_key, int(before + w), member)
      if at == newest then last = member end
    end
    if at < oldest then oldest = at end
    total, changed = total + w, true
  end
  return r
end
local made
local function rule()
  if not made then made = make_rule() end
  return made
end

local function save(t, renew)
  if not changed then return end
  -- Idle buckets vanish: both keys live the longest interval past the newest entry (or now),
  -- plus a second for clocks that drift apart; renewed a whole interval ahead, so rarely.
  local need = math.max(newest - t, 0) + longest + 1000
  local ttl = nil  -- keep the keys' expiry
  if oldest == NONE then
    ttl = need  -- no log: only the state (the trimmed floor) is left
  elseif renew and expiry < t + need then
    expiry = t + need + longest
    ttl = expiry - t
    redis.call('PEXPIRE', log_key, string.format('%d', ttl))
  end
  local state = struct.pack('<dddddddd', base, trimmed, seq, total, newest, oldest, expiry,
    default and #default or -1) .. (default or '') .. last
  if ttl then
    redis.call('SET', state_key, state, 'PX', string.format('%d', ttl))
  else
    redis.call('SET', state_key, state, 'KEEPTTL')
  end
end

if op == 'R' then  -- reserve
  local out, latest = {}, -NONE
  for j = 1, #ARGV do  -- in order, each decided as if alone
    local t, w, max_delay, name = request(j)
    t = time_of(t)
    -- P(x) is exact only from the newest trimmed entry on: an item stamped so late that a
    -- rate's window would reach behind it (another client decided later and trimmed) is
    -- decided, and booked, at the earliest time the log still vouches for.
    if trimmed + longest > t then t = trimmed + longest end
    if oldest <= t - longest then rule().trim(t - longest) end
    local at, blocking = rule().earliest(t, w)
    if blocking == 0 or (at ~= -1 and max_delay and at - t <= max_delay) then
      rule().record(at, w, name)
      blocking = 0
    end
    out[#out + 1] = string.format('%d %d %d', at == -1 and -1 or at - t, blocking, t)
    if t > latest then latest = t end
  end
  save(latest, true)
  return table.concat(out, ' ')
end
local t, n, _, name = request(1)
t = time_of(t)
if op == 'W' then  -- waiting
  -- Counted from the item's own stamp: nothing is recorded or restamped.
  local at, blocking = rule().earliest(math.max(t, trimmed + longest), n)
  if blocking == 0 then return at - t end  -- 0, or the way to the floor for a late stamp
  if at == -1 then return -1 end
  return at - t
elseif op == 'X' then  -- release
  -- The newest entry at t under that name holding at least n: merged entries give part back.
  local r = rule()
  local rank = r.last_upto(t)
  if rank < 0 then return 0 end
  local member, ts, cum = r.entry(rank)
  local found, own
  while member and ts == t do
    local prev, _, before = nil, nil, base
    if rank > 0 then prev, _, before = r.entry(rank - 1) end
    if r.owner(member) == name and cum - before >= n then
      found, own = member, cum - before
      break
    end
    rank, member, ts, cum = rank - 1, prev, prev and r.stamp(prev), before
  end
  if not found then return 0 end
  local later = redis.call('ZRANGE', log_key, rank + 1, -1)
  if own == n then redis.call('ZREM', log_key, found) else redis.call('ZINCRBY', log_key, r.int(-n), found) end
  for i = 1, #later do redis.call('ZINCRBY', log_key, r.int(-n), later[i]) end
  total, last, changed = total - n, '', true
  r.refresh_oldest()
  save(t, false)
  return 1
elseif op == 'L' then  -- leak
  local b = base
  rule().trim(t - longest)
  save(t, false)
  return base - b
elseif op == 'C' then  -- count
  return total - base
elseif op == 'P' then  -- peek
  local unit = total - n
  if n < 0 or unit <= base then return nil end
  local r = rule()
  local e = redis.call('ZRANGEBYSCORE', log_key, r.int(unit), '+inf', 'LIMIT', 0, 1)[1]
  return {r.owner(e), r.stamp(e)}
end
return redis.error_reply('pyrate_limiter: unknown op ' .. op)
"""
SHA = hashlib.sha1(SCRIPT.encode()).hexdigest()
_SHA = SHA.encode()  # bytes, like the keys: redis-py encodes every str argument on every call


class AsyncRedisBucket(AsyncReservingBucket):
    """A bucket kept in Redis (one server or a cluster): many processes share it by ``bucket_key``.

    Each item is one sorted-set entry carrying its weight (items of one millisecond and name in a
    row share one), so a decision costs O(log n) in the entries kept, whatever the weight; an item
    stamped before newer entries (skewed clocks, queued reservations) also updates the running
    weight of those. Every key expires once idle for the
    longest interval (plus pending reservations and a second of slack).

    ``reserve`` restamps the item with the time it was decided at: the server's, or, for an item
    stamped so late that its window reaches behind entries already trimmed, the earliest time
    the log can still vouch for.

    :param redis: a sync or async client, single node or cluster. The async bucket runs a sync
        client's calls in a worker thread, so it works on event loops the async client cannot use.
    :param bucket_key: the shared name and, exactly, the key of the bucket's log (a sorted set);
        ``DEL bucket_key`` resets the bucket. Its state lives beside it, in the same cluster
        slot, at ``{bucket_key}:state:bucket_key`` (see ``state_key``).
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
        # The script computes in spans (an interval's ms plus the stamp itself, see _window), never intervals.
        pairs = [(rate.limit, span(rate.interval)) for rate in self.rates]
        longest, room = max(stamps for _, stamps in pairs), min(limit for limit, _ in pairs)
        numbers = [longest, room, *(n for pair in pairs for n in pair)]
        self._unstorable = max(UNSTORABLE, self.rates[-1].limit)
        self._rule = struct.pack(f"<H{len(numbers)}d", len(self.rates), *numbers)  # every call ends with it
        # Decided once: an async client is awaited, a sync one runs in a worker thread.
        self._native = is_async_client(redis)
        self._client: Any = redis  # the kind _native says; each helper below names its type
        try:
            from redis.exceptions import NoScriptError, RedisClusterException, RedisError
        except ImportError as error:
            raise ImportError("the Redis bucket needs redis-py: pip install 'pyrate-limiter[redis]'") from error

        self._failures = (RedisError, RedisClusterException, OSError)
        self._reserving = AsyncBatcher(self._reserve_all)
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
        if item.weight > self._unstorable:
            return NEVER, self.rates[0]
        # Concurrent reservations share one script call: the script decides them in order.
        t, extra = (SERVER_CLOCK if self.server_time else item.timestamp), (-1 if max_delay is None else max_delay)
        reply = await self._reserving.submit(_request(t, item.weight, extra, item.name))
        if type(reply) is int:  # the usual acquire: recorded at that time, its own
            item.timestamp = reply
            return 0, None
        delay, index, now = reply
        # Restamped with the time it was decided at: the server's clock, or later than its own
        # stamp when it came too late for that. The limiter sleeps and releases relative to it.
        item.timestamp = int(now)
        blocking = int(index)  # 1-based, 0: none
        return int(delay), (self.rates[blocking - 1] if blocking else None)

    async def waiting(self, item: RateItem) -> int:
        if item.weight > self._unstorable:
            return NEVER
        return int(await self._run("waiting", SERVER_CLOCK if self.server_time else item.timestamp, item.weight))

    async def release(self, item: RateItem) -> None:
        await self._run("release", item.timestamp, item.weight, -1, item.name)

    async def leak(self, current_timestamp: int) -> int:
        """Trim what cannot count at ``current_timestamp`` (with ``server_time``: at the server's clock)."""
        return int(await self._run("leak", SERVER_CLOCK if self.server_time else current_timestamp))

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

    async def _run(self, op: str, t: float, n: int = 0, extra: float = -1, name: Any = "") -> Any:
        args = [_OPS[op] + _request(t, n, extra, name) + self._rule]
        return await self._call(_script, _blocking_script, self._keys, args)

    async def _reserve_all(self, requests: list[bytes]) -> list[Any]:
        requests[0] = _OPS["reserve"] + requests[0] + self._rule  # the batch's own list: sent, then dropped
        reply = await self._call(_script, _blocking_script, self._keys, requests)
        if type(reply) is int:  # the usual acquire's answer
            return [reply]
        words = reply.split()
        return [words[i : i + 3] for i in range(0, len(words), 3)]

    async def _call(self, native: Any, blocking: Any, *args: Any) -> Any:
        try:
            if self._native:
                # resolve: the sync twin, handed an async client, refuses the awaitable it gets.
                return await aresolve(native(self._client, self._no_script, *args))
            return await arun_blocking(blocking, self._client, self._no_script, *args)
        except self._failures as error:
            failed = f"the Redis backend of RedisBucket (key {self.bucket_key!r}) failed"
            raise BackendError(f"{failed}: {reason(error)}") from error


# The script's op letters, and a request's time when the server's clock decides.
_OPS = {"reserve": b"R", "waiting": b"W", "release": b"X", "leak": b"L", "count": b"C", "peek": b"P"}
SERVER_CLOCK = float("nan")
_NUMBERS = struct.Struct("<dddI")


def _request(t: float, n: int, extra: float, name: Any) -> bytes:
    """One request as the script unpacks it: time, weight and extra as doubles, then the name's
    length and bytes.

    One packed argument, not four of text: redis-py spends more per argument, and Lua more per
    number read from text, than Redis spends on the whole decision.
    """
    text: bytes = name if isinstance(name, bytes) else str(name).encode("utf-8", "surrogateescape")
    return _NUMBERS.pack(t, n, extra, len(text)) + text


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


def _slot(key: bytes) -> int:
    """Redis Cluster's hash slot of a key that has no hash tag: CRC16 (XMODEM) mod 16384."""
    return binascii.crc_hqx(key, 0) % 16384


def is_async_client(redis: object) -> bool:
    """Whether ``redis`` is an async client (its commands return awaitables)."""
    return inspect.iscoroutinefunction(getattr(type(redis), "execute_command", None))


# Each driver call twice: awaited on an async client, or run in a worker thread on a sync one.


async def _script(redis: AsyncRedisClient, no_script: type[Exception], keys: tuple[bytes, ...], args: list[Any]) -> Any:
    # execute_command: evalsha() is two more Python calls on the way to it, on every acquire.
    execute: Any = redis.execute_command  # typed in some client classes, not in others
    try:
        return await execute("EVALSHA", _SHA, len(keys), *keys, *args)
    except no_script:
        # Flushed cache, restarted server or failover: EVAL runs the script and caches it again.
        return await redis.eval(SCRIPT, len(keys), *keys, *args)


def _blocking_script(redis: RedisClient, no_script: type[Exception], keys: tuple[bytes, ...], args: list[Any]) -> Any:
    execute: Any = redis.execute_command
    try:
        return execute("EVALSHA", _SHA, len(keys), *keys, *args)
    except no_script:
        return redis.eval(SCRIPT, len(keys), *keys, *args)


async def _load(redis: AsyncRedisClient, no_script: type[Exception]) -> None:
    await redis.script_load(SCRIPT)


def _blocking_load(redis: RedisClient, no_script: type[Exception]) -> None:
    redis.script_load(SCRIPT)


async def _delete(redis: AsyncRedisClient, no_script: type[Exception], *keys: bytes) -> None:
    await redis.delete(*keys)


def _blocking_delete(redis: RedisClient, no_script: type[Exception], *keys: bytes) -> None:
    redis.delete(*keys)
