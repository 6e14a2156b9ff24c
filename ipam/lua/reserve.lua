-- reserve(token, ttl_ms, mac, mac_is_static, mode, payload, sticky, namespace, name,
--         require_rebuilt)
-- mode: 'any' | 'static' (payload {fam: offset}) | 'pool' (payload [[[fam, lo, hi]...]...])
-- Nothing is written until every family and the MAC are settled, so a refusal leaves
-- no trace; a token already known returns its allocation unchanged (retry-safe).
-- The arguments arrive as one string, fields separated by the unit separator (\31):
-- one argument instead of ten halves what a client spends packing the call.
local A = {}
for field in string.gmatch(ARGV[1] .. '\31', '([^\31]*)\31') do A[#A + 1] = field end
local token, ttl, mac, mac_static, mode, payload, sticky, ns, name =
  A[1], tonumber(A[2]), A[3], A[4] == '1', A[5], A[6], A[7], A[8], A[9]
local require_rebuilt = A[10] == '1'

local config = load_config()
if not config then return {'unknown_subnet'} end
local existing = get_record(token)
if existing then return {'ok', cjson.encode(existing), 'existing'} end

if redis.call('HGET', K_META, 'fenced') == '1' then return {'fenced'} end
-- Hand out nothing new until the index was rebuilt from the live pods on this very
-- Redis (a restart or failover may have lost reservations whose pods exist).
if require_rebuilt and redis.call('HGET', K_META, 'rebuilt') ~= replication_id() then
  return {'fenced'}
end

local now = now_ms()

local function owner_of(fam, off)
  local holder = redis.call('HGET', OWNER[fam], off)
  if not holder then return nil end
  local rec = get_record(holder)
  return rec and cjson.encode(rec) or cjson.encode({t = holder})
end

-- A StatefulSet ordinal's kept address moves to the new token.
if sticky ~= '' then
  local held = redis.call('HGET', K_STICKY, sticky)
  local rec = held and get_record(held)
  if rec then
    drop_indexes(rec)
    redis.call('HDEL', K_ALLOC, rec.t)
    redis.call('ZREM', K_EXPIRY, rec.t)
    for fam, off in pairs(rec.a) do redis.call('HSET', OWNER[fam], off, token) end
    if rec.m then redis.call('HSET', K_MACS, rec.m, token) end
    bump(rec.s, -1)
    rec.t, rec.s, rec.u, rec.n, rec.p, rec.x = token, 'reserved', '', ns, name, now + ttl
    put_record(rec)
    redis.call('HSET', K_STICKY, sticky, token)
    redis.call('ZADD', K_EXPIRY, rec.x, token)
    if name ~= '' then redis.call('HSET', K_PODS, ns .. '/' .. name, token) end
    bump('reserved')
    return {'ok', cjson.encode(rec), 'sticky'}
  end
end

-- Next never-used offset at or after the cursor (skipping exclusions and static
-- holders), without moving the cursor: the move is written only on success.
local cursor_moves = {}
local function next_fresh(fam)
  local fcfg = config[fam]
  local cur = tonumber(redis.call('HGET', K_CURSOR, fam) or '0')
  while cur < fcfg.size do
    local skip_to = excluded_until(fcfg.excl, cur) or excluded_until(fcfg.pool, cur)
    if skip_to then
      cur = skip_to + 1
    elseif redis.call('HEXISTS', OWNER[fam], fmt(cur)) == 1 then
      cur = cur + 1
    else
      cursor_moves[fam] = cur + 1
      return fmt(cur)
    end
  end
  cursor_moves[fam] = cur
  return nil
end

local popped = {}
local function oldest_released(fam)
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

local function dynamic(fam)
  return next_fresh(fam) or oldest_released(fam)
end

-- First free offset of a pool span, or nil.
local function free_in_span(fam, lo, hi)
  if lo == hi then
    if redis.call('HEXISTS', OWNER[fam], lo) == 0 then return lo end
    return nil
  end
  local fcfg = config[fam]
  for n = tonumber(lo), tonumber(hi) do
    local off = fmt(n)
    if not excluded_until(fcfg.excl, n) and redis.call('HEXISTS', OWNER[fam], off) == 0 then
      return off
    end
  end
  return nil
end

local chosen = {}
if mode == 'static' then
  for fam, off in pairs(cjson.decode(payload)) do
    if not config[fam] then return {'bad_family', fam} end
    local holder = owner_of(fam, off)
    if holder then bump('conflicts'); return {'conflict', fam, off, holder} end
    chosen[fam] = off
  end
elseif mode == 'pool' then
  local entries = cjson.decode(payload)
  local positions, used = 0, 0
  for _, entry in ipairs(entries) do
    local picks, complete = {}, true
    for _, span in ipairs(entry) do
      local fam, lo, hi = span[1], span[2], span[3]
      local count = tonumber(hi) - tonumber(lo) + 1
      positions = positions + count
      local off = free_in_span(fam, lo, hi)
      if off then picks[fam] = off else complete = false end
      if not off then used = used + count end
    end
    if complete then chosen = picks; break end
  end
  if next(chosen) == nil then
    bump('exhausted')
    return {'pool_exhausted', tostring(used), tostring(positions)}
  end
end

for fam, _ in pairs(config) do
  if not chosen[fam] then
    local off = dynamic(fam)
    if not off then
      bump('exhausted')
      return {'exhausted', fam, tostring(redis.call('HLEN', OWNER[fam]))}
    end
    chosen[fam] = off
  end
end

if mac_static then
  local holder = redis.call('HGET', K_MACS, mac)
  if holder then
    bump('conflicts')
    local rec = get_record(holder)
    return {'conflict', 'mac', mac, rec and cjson.encode(rec) or cjson.encode({t = holder})}
  end
elseif redis.call('HEXISTS', K_MACS, mac) == 1 then
  return {'mac_taken'}
end

-- Commit.
for fam, off in pairs(chosen) do
  redis.call('HSET', OWNER[fam], off, token)
  if popped[fam] == off or mode ~= 'any' then redis.call('ZREM', FREE[fam], off) end
  if cursor_moves[fam] then redis.call('HSET', K_CURSOR, fam, cursor_moves[fam]) end
end
redis.call('HSET', K_MACS, mac, token)
local rec = {t = token, s = 'reserved', a = chosen, m = mac, x = now + ttl, u = '',
             n = ns, p = name, k = sticky, c = now}
put_record(rec)
redis.call('ZADD', K_EXPIRY, rec.x, token)
if sticky ~= '' then redis.call('HSET', K_STICKY, sticky, token) end
if name ~= '' then redis.call('HSET', K_PODS, ns .. '/' .. name, token) end
bump('reserved')
bump('allocations')
return {'ok', cjson.encode(rec), 'new'}
