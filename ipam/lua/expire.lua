-- expire(limit): releases reservations whose TTL has passed (pods never stored).
local limit = tonumber(ARGV[1])
local due = redis.call('ZRANGEBYSCORE', K_EXPIRY, '-inf', now_ms(), 'LIMIT', 0, limit)
local config = load_config()
local expired = {}
for _, token in ipairs(due) do
  local rec = get_record(token)
  if rec and rec.s == 'reserved' then
    free_record(rec, config)
    bump('expired')
    expired[#expired + 1] = token
  else
    redis.call('ZREM', K_EXPIRY, token)
  end
end
return expired
