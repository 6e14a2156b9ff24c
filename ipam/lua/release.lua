-- release(by, value, keep_sticky): by is 'token' | 'pod' (namespace/name) | 'uid' |
-- 'sticky'. An unknown value is not an error (release is idempotent). With keep_sticky,
-- a StatefulSet ordinal's allocation is kept (state 'kept') for the next pod. With
-- only_reserved, a record that is no longer reserved (bound meanwhile) is left alone.
local by, value, keep_sticky, only_reserved = ARGV[1], ARGV[2], ARGV[3] == '1', ARGV[4] == '1'
local token = value
if by == 'pod' then token = redis.call('HGET', K_PODS, value)
elseif by == 'uid' then token = redis.call('HGET', K_UIDS, value)
elseif by == 'sticky' then token = redis.call('HGET', K_STICKY, value) end
if not token then return {'none'} end
local rec = get_record(token)
if not rec then return {'none'} end
if only_reserved and rec.s ~= 'reserved' then return {'none'} end
if keep_sticky and rec.k and rec.k ~= '' then
  if rec.s == 'kept' then return {'kept', cjson.encode(rec)} end
  drop_indexes(rec)
  redis.call('ZREM', K_EXPIRY, token)
  bump(rec.s, -1)
  rec.s, rec.u, rec.x = 'kept', '', 0
  put_record(rec)
  bump('kept')
  return {'kept', cjson.encode(rec)}
end
free_record(rec, load_config())
return {'released', cjson.encode(rec)}
