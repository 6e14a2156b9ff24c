-- bind(token, uid, namespace, name): a stored pod claims its reservation.
-- Binding again to the same pod is a no-op; a different pod is refused.
local token, uid, ns, name = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local rec = get_record(token)
if not rec then return {'unknown'} end
if rec.s == 'bound' then
  if rec.u == uid then return {'ok', cjson.encode(rec)} end
  return {'conflict', cjson.encode(rec)}
end
drop_indexes(rec)
bump(rec.s, -1)
rec.s, rec.u, rec.n, rec.p, rec.x = 'bound', uid, ns, name, 0
put_record(rec)
redis.call('ZREM', K_EXPIRY, token)
redis.call('HSET', K_PODS, ns .. '/' .. name, token)
redis.call('HSET', K_UIDS, uid, token)
bump('bound')
return {'ok', cjson.encode(rec)}
