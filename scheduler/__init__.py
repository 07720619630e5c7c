"""Leasehold's core: jobs, leases and queues in Redis, changed only by Lua scripts."""
