-- configure(config, spec, gateways, reopened, reset, epoch): installs a subnet's allocator
-- config. gateways {fam: offset} must not be held; reset lists families whose CIDR
-- changed (allowed only while empty); reopened {fam: [[lo, hi]...]} are offsets that
-- were excluded and no longer are. Released offsets that the new config excludes are
-- dropped from the free lists.
local config_json, spec_json = ARGV[1], ARGV[2]
local gateways, reopened, reset = cjson.decode(ARGV[3]), cjson.decode(ARGV[4]), cjson.decode(ARGV[5])
local epoch = ARGV[6]
local config = cjson.decode(config_json)
local is_new = redis.call('HEXISTS', K_META, 'config') == 0

for fam, off in pairs(gateways) do
  local holder = redis.call('HGET', OWNER[fam], off)
  if holder then return {'gateway_in_use', fam, off, holder} end
end
for _, fam in ipairs(reset) do
  local held = redis.call('HLEN', OWNER[fam])
  if held > 0 then return {'in_use', fam, tostring(held)} end
end
for _, fam in ipairs(reset) do
  redis.call('DEL', FREE[fam])
  redis.call('HDEL', K_CURSOR, fam)
end
for fam, fcfg in pairs(config) do
  for _, off in ipairs(redis.call('ZRANGE', FREE[fam], 0, -1)) do
    if not reusable(fam, fcfg, off) then redis.call('ZREM', FREE[fam], off) end
  end
  local cur = tonumber(redis.call('HGET', K_CURSOR, fam) or '0')
  for _, iv in ipairs(reopened[fam] or {}) do
    local lo, hi = iv[1], math.min(iv[2], cur - 1)
    if hi - lo > 65536 then
      -- Too many to list: walk them again from the cursor instead.
      cur = math.min(cur, lo)
      redis.call('HSET', K_CURSOR, fam, fmt(cur))
    else
      reopen(fam, lo, hi, cur)
    end
  end
end
redis.call('HSET', K_META, 'config', config_json, 'spec', spec_json)
-- A subnet created after the sync worker rebuilt the index on this very Redis (epoch,
-- the space-separated IDs of the shards it was rebuilt on) cannot have lost anything:
-- it starts out rebuilt.
local here = replication_id()
if is_new and epoch ~= '' and string.find(' ' .. epoch .. ' ', ' ' .. here .. ' ', 1, true) then
  redis.call('HSET', K_META, 'rebuilt', here)
end
return {'ok'}
