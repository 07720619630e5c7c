--[[
  workers_seen: record signs of life (claims and lease calls) of many workers at once: each
  existing worker record gets last_heartbeat_ms = now, and one marked offline is live again.

  KEYS[1]  workers  ZSET   member = worker id, score = registration time (ms); read only

  ARGV[1]  now_ms         integer, or "" for Redis TIME
  ARGV[2]  worker_prefix  string, "{<ns>}:worker:" (same hash tag as KEYS[1])
  ARGV[3..] worker ids    strings, the workers seen

  Returns  {"OK", updated}   records that existed (a revoked worker's record is not recreated)
  Errors   error "BAD_ARG <name>" for malformed ARGV, before any write
  Writes   HSET worker last_heartbeat_ms (never backwards), status (offline -> online or
           draining)
  Derived  <ARGV[2]><worker id>  HASH  the record of a worker seen
  Bounds   creates no key (writes only existing worker records)
  Cost     O(workers seen)
]]
-- @include base

local now = clock(ARGV[1])
local updated = 0
for i = 3, #ARGV do
  local key = ARGV[2] .. ARGV[i]
  local f = redis.call("HMGET", key, "status", "drain", "last_heartbeat_ms")
  if f[1] then
    updated = updated + 1
    if now > (tonumber(f[3]) or 0) then redis.call("HSET", key, "last_heartbeat_ms", now) end
    if f[1] == "offline" then
      local status = "online"
      if f[2] == "1" then status = "draining" end
      redis.call("HSET", key, "status", status)
    end
  end
end
return {"OK", updated}
