"""podnet's IPAM: subnets, pools and the Redis-backed allocator (see ``ipam.store``)."""
