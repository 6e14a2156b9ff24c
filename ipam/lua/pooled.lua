-- pooled(pooled, reopened): the offsets of the subnet's IPPools, {fam: [[lo, hi]...]},
-- which dynamic allocation skips. reopened {fam: [[lo, hi]...]} were pooled and no longer
-- are: those the cursor has passed and nobody holds go back to the free list.
local pooled, reopened = ARGV[1], cjson.decode(ARGV[2])
redis.call('HSET', K_META, 'pooled', pooled)
for fam, intervals in pairs(reopened) do
  local cur = tonumber(redis.call('HGET', K_CURSOR, fam) or '0')
  for _, iv in ipairs(intervals) do reopen(fam, iv[1], iv[2], cur) end
end
return {'ok'}
