--[[
  sweep_workers: mark workers offline that have not sent a heartbeat for offline_ms (bounded batch).

  KEYS[1]  workers  ZSET   member = worker id, score = registration time (ms)

  ARGV[1]  now_ms         integer, or "" for Redis TIME
  ARGV[2]  offline_ms     integer > 0
  ARGV[3]  offset         integer >= 0, where this batch starts in KEYS[1]
  ARGV[4]  batch          integer > 0
  ARGV[5]  worker_prefix  string, "{<ns>}:worker:" (same hash tag as KEYS[1])

  Returns  {"OK", marked_offline, next_offset}   next_offset = -1 when the set is done
  Errors   error "BAD_ARG <name>" for malformed ARGV, before any write
  Writes   HSET worker status = offline
  Derived  <ARGV[5]><worker id>  HASH  a worker record of the batch
  Bounds   creates nothing (it sets a field of existing workers)
  Cost     O(batch)
]]
-- @include base

local now = clock(ARGV[1])
local offline_ms = num(ARGV[2], "offline_ms")
local offset = num(ARGV[3], "offset")
local batch = num(ARGV[4], "batch")

local ids = redis.call("ZRANGE", KEYS[1], offset, offset + batch - 1)
local marked = 0
for _, id in ipairs(ids) do
  local key = ARGV[5] .. id
  local f = redis.call("HMGET", key, "status", "last_heartbeat_ms")
  if f[1] and f[1] ~= "offline" and now - (tonumber(f[2]) or 0) >= offline_ms then
    redis.call("HSET", key, "status", "offline")
    marked = marked + 1
  end
end
local next_offset = -1
if #ids == batch then next_offset = offset + batch end
return {"OK", marked, next_offset}
