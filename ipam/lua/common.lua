-- Shared by every IPAM script (prepended when the scripts are loaded).
-- KEYS[1] is the subnet's key base, ``<prefix>{<subnet>}:``; every key of the subnet is
-- that base plus a suffix, so all share its hash tag and live in the slot the declared
-- key routes the script to. Declaring one key instead of thirteen keeps each call small:
-- packing arguments is most of a client's cost. On Redis Cluster the script declares
-- all thirteen instead, ``meta`` first (KEYS[1] is then the base plus 'meta'): while a
-- slot moves between shards, Redis runs a script only where all the keys it declares
-- are, and answers TRYAGAIN while they are split, so no script ever reads half a
-- subnet's index.
local BASE = KEYS[1]
if #KEYS > 1 then BASE = string.sub(KEYS[1], 1, -5) end
local K_META, K_ALLOC, K_OWNER4, K_OWNER6, K_FREE4, K_FREE6, K_CURSOR, K_EXPIRY,
      K_MACS, K_PODS, K_UIDS, K_STICKY, K_STATS =
      BASE .. 'meta', BASE .. 'alloc', BASE .. 'owner:4', BASE .. 'owner:6',
      BASE .. 'free:4', BASE .. 'free:6', BASE .. 'cursor', BASE .. 'expiry',
      BASE .. 'macs', BASE .. 'pods', BASE .. 'uids', BASE .. 'sticky', BASE .. 'stats'

local OWNER = {['4'] = K_OWNER4, ['6'] = K_OWNER6}
local FREE = {['4'] = K_FREE4, ['6'] = K_FREE6}

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function fmt(n)
  return string.format('%d', n)
end

-- The subnet's allocator config: per family the dynamic span ``size``, the offsets never
-- handed out ``excl``, and ``pool``: offsets of IPPools, which only pool requests take.
local function parse_config(config_json, pooled_json)
  local config = cjson.decode(config_json)
  local pooled = pooled_json and cjson.decode(pooled_json) or {}
  for fam, fcfg in pairs(config) do fcfg.pool = pooled[fam] or {} end
  return config
end

local function load_config()
  local meta = redis.call('HMGET', K_META, 'config', 'pooled')
  if not meta[1] then return nil end
  return parse_config(meta[1], meta[2])
end

-- Offsets beyond the dynamic span are longer than 15 digits; they are never walked,
-- pooled or excluded numerically (Python validates them exactly).
local function numeric(off)
  if #off > 15 then return nil end
  return tonumber(off)
end

-- Binary search of the merged exclusion intervals; returns the end of the interval
-- holding n, or nil.
local function excluded_until(excl, n)
  local lo, hi = 1, #excl
  while lo <= hi do
    local mid = math.floor((lo + hi) / 2)
    local iv = excl[mid]
    if n < iv[1] then hi = mid - 1
    elseif n > iv[2] then lo = mid + 1
    else return iv[2] end
  end
  return nil
end

-- Whether a released offset goes back to the free list: only offsets the cursor has
-- passed (those ahead of it are handed out by the cursor anyway) and that the current
-- config does not exclude.
local function reusable(fam, fcfg, off)
  local n = numeric(off)
  if not n or not fcfg or n >= fcfg.size then return false end
  local cursor = tonumber(redis.call('HGET', K_CURSOR, fam) or '0')
  return n < cursor and excluded_until(fcfg.excl, n) == nil
    and excluded_until(fcfg.pool or {}, n) == nil
end

local function get_record(token)
  local raw = redis.call('HGET', K_ALLOC, token)
  if not raw then return nil end
  return cjson.decode(raw)
end

local function put_record(rec)
  redis.call('HSET', K_ALLOC, rec.t, cjson.encode(rec))
end

local function bump(field, by)
  redis.call('HINCRBY', K_STATS, field, by or 1)
end

local function drop_indexes(rec)
  if rec.n and rec.n ~= '' then
    local podkey = rec.n .. '/' .. rec.p
    if redis.call('HGET', K_PODS, podkey) == rec.t then redis.call('HDEL', K_PODS, podkey) end
  end
  if rec.u and rec.u ~= '' and redis.call('HGET', K_UIDS, rec.u) == rec.t then
    redis.call('HDEL', K_UIDS, rec.u)
  end
end

-- Frees every address and index of an allocation. Released addresses join the free
-- list scored by a release sequence, so the one released longest ago is reused first.
local function free_record(rec, config)
  for fam, off in pairs(rec.a) do
    if redis.call('HGET', OWNER[fam], off) == rec.t then
      redis.call('HDEL', OWNER[fam], off)
      if reusable(fam, config and config[fam], off) then
        local seq = redis.call('HINCRBY', K_CURSOR, 'seq', 1)
        redis.call('ZADD', FREE[fam], seq, off)
      end
    end
  end
  if rec.m and redis.call('HGET', K_MACS, rec.m) == rec.t then redis.call('HDEL', K_MACS, rec.m) end
  drop_indexes(rec)
  if rec.k and rec.k ~= '' and redis.call('HGET', K_STICKY, rec.k) == rec.t then
    redis.call('HDEL', K_STICKY, rec.k)
  end
  redis.call('ZREM', K_EXPIRY, rec.t)
  redis.call('HDEL', K_ALLOC, rec.t)
  bump(rec.s, -1)
  bump('releases')
end

-- The replication ID of the Redis serving this slot. It changes when Redis restarts or
-- fails over, i.e. whenever the index may have lost writes.
local function replication_id()
  local info = redis.call('INFO', 'replication')
  return string.match(info, 'master_replid:(%x+)')
end

-- Offsets lo..hi (cut at the cursor) that may be handed out again: those the cursor has
-- passed and nobody holds join the front of the free list (they were never used).
local function reopen(fam, lo, hi, cur)
  for n = lo, math.min(hi, cur - 1) do
    local off = fmt(n)
    if redis.call('HEXISTS', OWNER[fam], off) == 0 then
      redis.call('ZADD', FREE[fam], 0, off)
    end
  end
end
