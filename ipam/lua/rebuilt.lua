-- rebuilt(): records that the index of this subnet was rebuilt from the live pods on the
-- Redis serving it now; allocation that requires it resumes. Returns the replication ID.
local id = replication_id()
redis.call('HSET', K_META, 'rebuilt', id, 'fenced', '0')
return id
