-- replid(): the replication ID of the Redis serving this subnet now, for a watcher that
-- rebuilds the index when it changes (on Redis Cluster each shard has its own).
return replication_id()
