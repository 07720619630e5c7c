--[[
  sweep_workers: mark workers offline that have not sent a heartbeat for offline_ms, and forget
  workers silent for retention_ms with their name and token (bounded batch).

  KEYS[1]  workers  ZSET   member = worker id, score = registration time (ms)
  KEYS[2]  names    HASH   field = worker name, value = worker id

  ARGV[1]  now_ms         integer, or "" for Redis TIME
  ARGV[2]  offline_ms     integer > 0
  ARGV[3]  retention_ms   integer > 0, a worker silent this long (and offline) is removed
  ARGV[4]  offset         integer >= 0, where this batch starts in KEYS[1]
  ARGV[5]  batch          integer > 0
  ARGV[6]  worker_prefix  string, "{<ns>}:worker:" (same hash tag as KEYS[1])
  ARGV[7]  token_prefix   string, "{<ns>}:token:" (same hash tag as KEYS[1])

  Returns  {"OK", marked_offline, removed, next_offset}   next_offset = -1 when the set is done
  Errors   error "BAD_ARG <name>" for malformed ARGV, before any write
  Writes   HSET worker status = offline; for a removed worker: DEL worker and its token,
           ZREM workers, HDEL names (when the name still maps to it)
  Derived  <ARGV[6]><worker id>  HASH  a worker record of the batch
           <ARGV[7]><digest>     HASH  a removed worker's token
  Bounds   creates no key; removes what a silent worker left, so the worker keys hold live
           workers plus those silent for less than the retention
  Cost     O(batch)
]]
-- @include base

local now = clock(ARGV[1])
local offline_ms = num(ARGV[2], "offline_ms")
local retention_ms = num(ARGV[3], "retention_ms")
local offset = num(ARGV[4], "offset")
local batch = num(ARGV[5], "batch")

local ids = redis.call("ZRANGE", KEYS[1], offset, offset + batch - 1)
local marked, removed = 0, 0
for _, id in ipairs(ids) do
  local key = ARGV[6] .. id
  local f = redis.call("HMGET", key, "status", "last_heartbeat_ms", "name", "token_digest")
  local silent = now - (tonumber(f[2]) or 0)
  if not f[1] or (silent >= offline_ms and silent >= retention_ms) then
    if f[4] then redis.call("DEL", ARGV[7] .. f[4]) end
    if f[3] and redis.call("HGET", KEYS[2], f[3]) == id then redis.call("HDEL", KEYS[2], f[3]) end
    redis.call("DEL", key)
    redis.call("ZREM", KEYS[1], id)
    removed = removed + 1
  elseif f[1] ~= "offline" and silent >= offline_ms then
    redis.call("HSET", key, "status", "offline")
    marked = marked + 1
  end
end
local next_offset = -1
-- Removed members shift the rest of the set down; the next batch starts where they were.
if #ids == batch then next_offset = offset + batch - removed end
return {"OK", marked, removed, next_offset}
