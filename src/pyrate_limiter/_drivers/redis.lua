-- The Redis bucket's script: the rule of pyrate_limiter/_window.py run server-side, so that every
-- decision is one atomic call. Loaded by pyrate_limiter/_drivers/redis.py, which packs its keys and
-- arguments; its SHA1 is computed from this whole text, comments included.
--
-- Two keys in one hash slot (see state_key in _drivers/redis.py):
--   KEYS[1] log    the user's key, as v3 kept it: deleting it resets the bucket, whatever the state
--           says. A sorted set scored by the running weight ``cum``; timestamps rise with it, so ranks
--           are in timestamp order too. A member is the timestamp in 6 bytes, then "/name" only for
--           a name other than the bucket's first one; items of one time and name recorded one after
--           the other share an entry (6-byte members keep Redis at ~105 bytes an entry). When that
--           time and name are taken further back, '#' and a 4-byte sequence number follow the time.
--           While the log is empty and a pause was set, it holds only HOLD (shorter than any entry),
--           so that the key exists and deleting it still resets the bucket, pause and all.
--   KEYS[2] state  one string, read and written once per call: eleven doubles (exact for these
--           integers, and cheaper for Lua than text) LAYOUT, base (weight of trimmed entries),
--           trimmed (newest trimmed timestamp), seq, total, newest, oldest, expiry (when both keys
--           expire, on the clients' clock), seen (a time the clients' clock has passed), pause
--           (nothing is admitted before it; 0: none), the first name's length (-1: none yet); then
--           the first name and the newest entry's member ('' = look it up). A state of an earlier
--           layout (shorter, or starting with base, never negative) reads as none: a reset.
--   KEYS[3] call   only for the calls that record (reserve, release): a key of its own per call,
--           in the same slot, holding the call's answer for CALL_MEMORY ms. A client that lost the
--           reply and sends the call again (redis-py retries on a timeout or a killed connection)
--           gets that answer back instead of a second record.
-- ARGV: one request each, packed: doubles time, weight (or peek's index) and max_delay (time NaN:
-- the server's clock; max_delay -1: none), the name's length (4 bytes) and bytes. The first one
-- comes between the op's letter and the rule: the number of rates (2 bytes), then doubles: longest
-- span, smallest limit, and limit and span of each rate (a span is the interval + 1: see _window).
-- Only reserve (R) takes several requests: it decides them in order, each as if alone, and answers
-- "delay rate-index time" for each, in one string, a refusal's followed by the units each rate
-- has left. Pause (U) takes its end as max_delay, and as
-- time NaN (the server's clock) or 0 (not known: the keys are then kept from the stamps seen).
-- Every argument, reply element and number parsed from text costs, on every call: the usual
-- acquire sends one argument, runs MGET, EXISTS, ZADD (or ZINCRBY), SET and the call's SET, gets an integer
-- back, and renews the keys' expiry about once per longest interval.

local log_key, state_key, call_key = KEYS[1], KEYS[2], KEYS[3]
local CALL_MEMORY = '10000'  -- ms: far longer than any client's retries of one call
local LAYOUT, FIXED = -2, 88  -- the state's layout and the length of its doubles
local NONE = 4503599627370496  -- 2^52: later than any time, and -NONE earlier than any
local saved
if call_key then
  local got = redis.call('MGET', state_key, call_key)
  if got[2] then  -- this call was made before: its first answer ('i' an integer, 's' a string)
    if string.sub(got[2], 1, 1) == 'i' then return tonumber(string.sub(got[2], 2)) end
    return string.sub(got[2], 2)
  end
  saved = got[1]
else
  saved = redis.call('GET', state_key)
end
local function answer(reply)  -- a recording call's reply, remembered under its call key
  if call_key then
    local kept = type(reply) == 'number' and 'i' .. string.format('%d', reply) or 's' .. reply
    redis.call('SET', call_key, kept, 'PX', CALL_MEMORY)
  end
  return reply
end
-- A state that speaks of a log (its oldest entry is a time, or a pause holds the key) whose key
-- is gone: someone deleted the key to reset the limit, as v3 users do. Start afresh, floor,
-- pause and all.
if saved and redis.call('EXISTS', log_key) == 0 then
  if #saved < FIXED then
    saved = nil
  else
    local layout, _, _, _, _, _, oldest, _, _, pause = struct.unpack('<dddddddddd', saved)
    if layout ~= LAYOUT or oldest < NONE or pause > 0 then saved = nil end
  end
end

-- The usual acquire first, before anything else is set up: one item stamped at or after the
-- newest entry, fitting the smallest limit, with nothing to trim and the keys' expiry far
-- enough ahead. Its answer is the time it was recorded at, an integer. Whatever else falls
-- through to the whole rule below, which decides it the same way; so does an item stamped before
-- the pause ends.
repeat  -- left by break, as Lua 5.1 has no goto; a function would cost a closure per call
  if not saved or #ARGV ~= 1 or #saved < FIXED then break end
  local op, t, w, _, name, _, longest, room = struct.unpack('<c1dddI4c0Hdd', ARGV[1])
  if op ~= 'R' or t ~= t then break end
  local layout, base, trimmed, seq, total, newest, oldest, expiry, seen, pause, dl, at =
    struct.unpack('<ddddddddddd', saved)
  if layout ~= LAYOUT or t < pause or dl < 0 or w <= 0 or t < newest or t < trimmed + longest
    or oldest <= t - longest or total - base + w > room or expiry < t + longest + 1000 then break end
  local default, member = string.sub(saved, at, at + dl - 1), struct.pack('>i6', t)
  if name ~= default then member = member .. '/' .. name end
  if t > newest then
    redis.call('ZADD', log_key, string.format('%d', total + w), member)
  elseif member == string.sub(saved, at + dl) then
    redis.call('ZINCRBY', log_key, string.format('%d', w), member)
  else
    break
  end
  redis.call('SET', state_key, struct.pack('<dddddddddddc0c0', LAYOUT, base, trimmed, seq, total + w, t, oldest,
    expiry, seen, pause, dl, default, member), 'KEEPTTL')
  return answer(t)
until true

local op, t1, w1, max_delay1, name1, count, longest, room, rates_at = struct.unpack('<c1dddI4c0Hdd', ARGV[1])
local function request(j)  -- time, weight, max_delay (nil: none), name
  local t, w, max_delay, name = t1, w1, max_delay1, name1
  if j > 1 then t, w, max_delay, name = struct.unpack('<dddI4c0', ARGV[j]) end
  if max_delay < 0 then max_delay = nil end
  return t, w, max_delay, name
end

local base, trimmed, seq, total, newest, oldest, expiry, seen, pause = 0, -NONE, 0, 0, -NONE, NONE, -NONE, -NONE, 0
local default, last = nil, ''
if saved and (#saved < FIXED or struct.unpack('<d', saved) ~= LAYOUT) then
  saved = nil  -- written by an earlier layout: read as none, so the log is started afresh
end
if saved then
  local _, dl, at
  _, base, trimmed, seq, total, newest, oldest, expiry, seen, pause, dl, at = struct.unpack('<ddddddddddd', saved)
  if dl >= 0 then default = string.sub(saved, at, at + dl - 1) end
  last = string.sub(saved, at + math.max(dl, 0))
else
  redis.call('DEL', log_key)  -- a log without its state cannot be read: start afresh
end
local changed, server_now = false, nil
local HOLD = 'hold'  -- the log's one member while it is empty and a pause was set (see the header)

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
    if oldest == NONE then  -- a new log: it needs its expiry, and replaces what held the key
      oldest, expiry = at, -NONE
      if pause > 0 then redis.call('ZREM', log_key, HOLD) end
    end
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
    if oldest == NONE then return -1 end  -- an empty log, or only HOLD
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
    if oldest == NONE then  -- a new log, as in append
      expiry = -NONE
      if pause > 0 then redis.call('ZREM', log_key, HOLD) end
    end
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
  r.spans, r.limits = spans, limits
  function r.counted(i, x)  -- units counting against rate i at x (reservations ahead too), and
    -- the rank of the newest entry that no longer does (-1: none)
    local rank, before = r.last_upto(x - spans[i]), base
    if rank >= 0 then
      local _
      _, _, before = r.entry(rank)
    end
    return total - before, rank
  end
  return r
end
local made
local function rule()
  if not made then made = make_rule() end
  return made
end

local function write(ttl)  -- the state, with ttl ms to live (nil: its expiry kept)
  local state = struct.pack('<ddddddddddd', LAYOUT, base, trimmed, seq, total, newest, oldest, expiry, seen, pause,
    default and #default or -1) .. (default or '') .. last
  if ttl then
    redis.call('SET', state_key, state, 'PX', string.format('%d', ttl))
  else
    redis.call('SET', state_key, state, 'KEEPTTL')
  end
end

local function hold(ttl)  -- an empty log under a pause: HOLD keeps its key, for as long as the state
  redis.call('ZADD', log_key, '0', HOLD)
  redis.call('PEXPIRE', log_key, string.format('%d', ttl))
end

local function save(t, renew)
  if not changed then return end
  -- Idle buckets vanish: both keys live the longest interval past the newest entry (or now, or
  -- the pause's end), plus a second for clocks that drift apart; renewed a whole interval
  -- ahead, so rarely.
  local need = math.max(newest - t, pause - t, 0) + longest + 1000
  local ttl = nil  -- keep the keys' expiry
  if oldest == NONE then
    ttl = need  -- no log: only the state (the trimmed floor, the pause) is left
    if pause > 0 then hold(ttl) end
  elseif renew and expiry < t + need then
    expiry = t + need + longest
    ttl = expiry - t
    redis.call('PEXPIRE', log_key, string.format('%d', ttl))
  end
  write(ttl)
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
    -- A pause moves the search's start, not the stamp: the delay counts from t.
    local at, blocking = rule().earliest(math.max(t, pause), w)
    if blocking == 0 and at > t then blocking = 1 end  -- only the pause held it: the first rate answers
    if blocking == 0 or (at ~= -1 and max_delay and at - t <= max_delay) then
      rule().record(at, w, name)
      blocking = 0
    end
    out[#out + 1] = string.format('%d %d %d', at == -1 and -1 or at - t, blocking, t)
    if blocking ~= 0 then  -- a refusal says what each rate has left at t, from this same call
      local r = rule()
      for i = 1, #r.spans do out[#out + 1] = string.format('%d', math.max(r.limits[i] - r.counted(i, t), 0)) end
    end
    if t > latest then latest = t end
  end
  if latest > seen then seen = latest end
  save(latest, true)
  return answer(table.concat(out, ' '))
end
local t, n, extra, name = request(1)
t = time_of(t)
if op == 'W' then  -- waiting
  -- Counted from the item's own stamp: nothing is recorded.
  local at, blocking = rule().earliest(math.max(t, trimmed + longest, pause), n)
  if blocking == 0 then return at - t end  -- 0, or the way to the floor for a late stamp
  if at == -1 then return -1 end
  return at - t
elseif op == 'X' then  -- release
  -- The newest entry at t under that name holding at least n: merged entries give part back.
  local r = rule()
  local rank = r.last_upto(t)
  if rank < 0 then return answer(0) end
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
  if not found then return answer(0) end
  local later = redis.call('ZRANGE', log_key, rank + 1, -1)
  if own == n then redis.call('ZREM', log_key, found) else redis.call('ZINCRBY', log_key, r.int(-n), found) end
  for i = 1, #later do redis.call('ZINCRBY', log_key, r.int(-n), later[i]) end
  total, last, changed = total - n, '', true
  r.refresh_oldest()
  save(t, false)
  return answer(1)
elseif op == 'L' then  -- leak
  local b = base
  if t > seen then seen = t end
  rule().trim(t - longest)
  save(t, false)
  return base - b
elseif op == 'S' then  -- state: waiting's answer, then per rate the units counted at t and ms until one frees
  local r = rule()
  local at = r.earliest(math.max(t, trimmed + longest, pause), n)
  local out = {at == -1 and -1 or at - t}
  for i = 1, #r.spans do
    local used, rank = r.counted(i, t)
    local reset = 0
    if used > 0 then
      local _, ts = r.entry(rank + 1)
      reset = ts + r.spans[i] - t
    end
    out[#out + 1] = used
    out[#out + 1] = reset
  end
  return out
elseif op == 'C' then  -- count
  return total - base
elseif op == 'P' then  -- peek
  local unit = total - n
  if n < 0 or unit <= base then return nil end
  local r = rule()
  local e = redis.call('ZRANGEBYSCORE', log_key, r.int(unit), '+inf', 'LIMIT', 0, 1)[1]
  return {r.owner(e), r.stamp(e)}
elseif op == 'Q' then  -- paused until
  return pause
elseif op == 'U' then  -- pause until extra: the latest end set stays
  if extra <= pause then return pause end
  pause = extra
  -- The keys must outlive the pause: kept from a time the clients' clock has surely passed, so
  -- rather too long than too short; a decision that renews them later does so from its own time.
  local keep = math.max(pause - math.max(t, seen), 0) + longest + 1000
  if oldest == NONE then
    if saved then keep = math.max(keep, redis.call('PTTL', state_key)) end
    hold(keep)
    write(keep)
  elseif expiry < pause + longest + 1000 then
    expiry = pause + longest + 1000
    redis.call('PEXPIRE', log_key, string.format('%d', keep))
    write(keep)
  else
    write(nil)
  end
  return pause
end
return redis.error_reply('pyrate_limiter: unknown op ' .. op)
