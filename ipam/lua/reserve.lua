-- reserve(request...): one ARGV per reservation, answered by one reply per reservation.
-- A request is its fields joined by the unit separator (\31): token, ttl_ms, mac,
-- mac_is_static, mode, payload, sticky, namespace, name, require_rebuilt; packed in one
-- argument, it costs a client one argument instead of ten.
-- mode: 'any' | 'static' (payload {fam: offset}) | 'pool' (payload [[[fam, lo, hi]...]...])
-- The requests of one call are made one after the other, each exactly as if it were a
-- call of its own (a later one sees what an earlier one wrote), so a client may pack
-- the reservations that arrive together into one call: what a call costs Redis beyond
-- its reservations (the script run, the subnet's config and state, the clock, the
-- counters) is paid once between them.
-- Nothing of a reservation is written until every family and the MAC are settled, so a
-- refusal leaves no trace; a token already known returns its allocation unchanged
-- (retry-safe).

-- State shared by the requests of this call, read once. The cursors and counters are
-- only read back through CURSOR and STATS here, so their writes wait for the end.
local meta = redis.call('HMGET', K_META, 'config', 'pooled', 'fenced', 'rebuilt')
local config = meta[1] and parse_config(meta[1], meta[2])
local fenced = meta[3] == '1'
local rebuilt_here = nil  -- whether meta 'rebuilt' names this Redis; asked when needed
local now = nil
local CURSOR, cursor_dirty = {}, {}
local STATS = {}

local function count(field, by)
  STATS[field] = (STATS[field] or 0) + (by or 1)
end

local function clock()
  if not now then now = now_ms() end
  return now
end

-- Hand out nothing new until the index was rebuilt from the live pods on this very
-- Redis (a restart or failover may have lost reservations whose pods exist).
local function rebuilt_on_this_redis()
  if rebuilt_here == nil then rebuilt_here = meta[4] == replication_id() end
  return rebuilt_here
end

local function cursor_of(fam)
  if not CURSOR[fam] then CURSOR[fam] = tonumber(redis.call('HGET', K_CURSOR, fam) or '0') end
  return CURSOR[fam]
end

local function owner_of(fam, off)
  local holder = redis.call('HGET', OWNER[fam], off)
  if not holder then return nil end
  local rec = get_record(holder)
  return rec and cjson.encode(rec) or cjson.encode({t = holder})
end

-- A StatefulSet ordinal's kept address moves to the new token; nil if none is kept.
-- Only a kept record moves: the sync worker keeps it once it saw the last pod gone. A
-- record still reserved or bound may belong to a live pod (a re-create that the API
-- server refuses as AlreadyExists runs admission first), so the request is refused.
-- A kept address that is no longer what the pod asks for (its StatefulSet's ip_pool or
-- ip_address changed) is freed instead, and the request is served as if none were kept.
local function hand_over(sticky, token, ttl, ns, name, mode, payload)
  local held = redis.call('HGET', K_STICKY, sticky)
  local rec = held and get_record(held)
  if not rec then return nil end
  if rec.s ~= 'kept' then
    count('conflicts')
    return {'sticky_held', sticky, cjson.encode(rec)}
  end
  if mode == 'static' then
    local wanted, same = cjson.decode(payload), true
    for fam, off in pairs(wanted) do
      if tostring(rec.a[fam]) ~= tostring(off) then same = false end
    end
    for fam, _ in pairs(rec.a) do
      if wanted[fam] == nil then same = false end
    end
    if not same then
      free_record(rec, config)
      return nil
    end
  end
  drop_indexes(rec)
  redis.call('HDEL', K_ALLOC, rec.t)
  redis.call('ZREM', K_EXPIRY, rec.t)
  for fam, off in pairs(rec.a) do redis.call('HSET', OWNER[fam], off, token) end
  if rec.m then redis.call('HSET', K_MACS, rec.m, token) end
  count(rec.s, -1)
  rec.t, rec.s, rec.u, rec.n, rec.p, rec.x = token, 'reserved', '', ns, name, clock() + ttl
  rec.c = clock()  -- reserved since now: the age the sync worker judges orphans by
  local text = cjson.encode(rec)
  redis.call('HSET', K_ALLOC, token, text)
  redis.call('HSET', K_STICKY, sticky, token)
  redis.call('ZADD', K_EXPIRY, rec.x, token)
  if name ~= '' then redis.call('HSET', K_PODS, ns .. '/' .. name, token) end
  count('reserved')
  return {'ok', text, 'sticky'}
end

-- Next never-used offset at or after the cursor (skipping exclusions and static
-- holders), without moving the cursor: the move (kept in moves) is made only on success.
local function next_fresh(fam, moves)
  local fcfg = config[fam]
  local cur = cursor_of(fam)
  while cur < fcfg.size do
    local skip_to = excluded_until(fcfg.excl, cur) or excluded_until(fcfg.pool, cur)
    if skip_to then
      cur = skip_to + 1
    elseif redis.call('HEXISTS', OWNER[fam], fmt(cur)) == 1 then
      cur = cur + 1
    else
      moves[fam] = cur + 1
      return fmt(cur)
    end
  end
  moves[fam] = cur
  return nil
end

local function oldest_released(fam, popped)
  while true do
    local first = redis.call('ZRANGE', FREE[fam], 0, 0)[1]
    if not first then return nil end
    local n = numeric(first)
    local pooled = n and excluded_until(config[fam].pool, n)
    if not pooled and redis.call('HEXISTS', OWNER[fam], first) == 0 then
      popped[fam] = first
      return first
    end
    redis.call('ZREM', FREE[fam], first)  -- held or now pooled: never hand it out
  end
end

-- First free offset of a pool span, or nil. An exclusion is stepped over whole, and
-- each address looked at before a free one is held, so the cost is the subnet's
-- exclusions and allocations, never the span's size.
local function free_in_span(fam, lo, hi)
  if lo == hi then
    if redis.call('HEXISTS', OWNER[fam], lo) == 0 then return lo end
    return nil
  end
  local fcfg = config[fam]
  local n, last = tonumber(lo), tonumber(hi)
  while n <= last do
    local skip_to = excluded_until(fcfg.excl, n)
    if skip_to then
      n = skip_to + 1
    else
      local off = fmt(n)
      if redis.call('HEXISTS', OWNER[fam], off) == 0 then return off end
      n = n + 1
    end
  end
  return nil
end

-- The offsets a static or pool request asks for: (chosen, nil) or (nil, refusal).
local function requested(mode, payload)
  local chosen = {}
  if mode == 'static' then
    for fam, off in pairs(cjson.decode(payload)) do
      if not config[fam] then return nil, {'bad_family', fam} end
      local holder = owner_of(fam, off)
      if holder then count('conflicts'); return nil, {'conflict', fam, off, holder} end
      chosen[fam] = off
    end
  elseif mode == 'pool' then
    local positions, used = 0, 0
    for _, entry in ipairs(cjson.decode(payload)) do
      local picks, complete = {}, true
      for _, span in ipairs(entry) do
        local fam, lo, hi = span[1], span[2], span[3]
        local size = tonumber(hi) - tonumber(lo) + 1
        positions = positions + size
        local off = free_in_span(fam, lo, hi)
        if off then picks[fam] = off else complete = false end
        if not off then used = used + size end
      end
      if complete then chosen = picks; break end
    end
    if next(chosen) == nil then
      count('exhausted')
      return nil, {'pool_exhausted', tostring(used), tostring(positions)}
    end
  end
  return chosen, nil
end

local function reserve(request)
  local A = {}
  for field in string.gmatch(request .. '\31', '([^\31]*)\31') do A[#A + 1] = field end
  local token, ttl, mac, mac_static, mode, payload, sticky, ns, name =
    A[1], tonumber(A[2]), A[3], A[4] == '1', A[5], A[6], A[7], A[8], A[9]

  if not config then return {'unknown_subnet'} end
  local existing = redis.call('HGET', K_ALLOC, token)
  if existing then return {'ok', existing, 'existing'} end
  if fenced then return {'fenced'} end
  if A[10] == '1' and not rebuilt_on_this_redis() then return {'fenced'} end

  if sticky ~= '' then
    local handed = hand_over(sticky, token, ttl, ns, name, mode, payload)
    if handed then return handed end
  end

  local chosen, refusal = requested(mode, payload)
  if refusal then return refusal end
  local moves, popped = {}, {}
  for fam, _ in pairs(config) do
    if not chosen[fam] then
      local off = next_fresh(fam, moves) or oldest_released(fam, popped)
      if not off then
        count('exhausted')
        return {'exhausted', fam, tostring(redis.call('HLEN', OWNER[fam]))}
      end
      chosen[fam] = off
    end
  end

  if mac_static then
    local holder = redis.call('HGET', K_MACS, mac)
    if holder then
      count('conflicts')
      local rec = get_record(holder)
      return {'conflict', 'mac', mac, rec and cjson.encode(rec) or cjson.encode({t = holder})}
    end
    redis.call('HSET', K_MACS, mac, token)
  elseif redis.call('HSETNX', K_MACS, mac, token) == 0 then
    return {'mac_taken'}
  end

  -- Commit (the MAC is already written: nothing can refuse from here on).
  for fam, off in pairs(chosen) do
    redis.call('HSET', OWNER[fam], off, token)
    if popped[fam] == off or mode ~= 'any' then redis.call('ZREM', FREE[fam], off) end
    if moves[fam] then CURSOR[fam], cursor_dirty[fam] = moves[fam], true end
  end
  local at = clock()
  local rec = {t = token, s = 'reserved', a = chosen, m = mac, x = at + ttl, u = '',
               n = ns, p = name, k = sticky, c = at}
  local text = cjson.encode(rec)
  redis.call('HSET', K_ALLOC, token, text)
  redis.call('ZADD', K_EXPIRY, rec.x, token)
  if sticky ~= '' then redis.call('HSET', K_STICKY, sticky, token) end
  if name ~= '' then redis.call('HSET', K_PODS, ns .. '/' .. name, token) end
  count('reserved')
  count('allocations')
  return {'ok', text, 'new'}
end

local replies = {}
for i = 1, #ARGV do replies[i] = reserve(ARGV[i]) end
for fam, _ in pairs(cursor_dirty) do redis.call('HSET', K_CURSOR, fam, CURSOR[fam]) end
for field, by in pairs(STATS) do redis.call('HINCRBY', K_STATS, field, by) end
return replies
