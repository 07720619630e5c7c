--[[
  forget_queue: delete what is left of a queue that has no jobs, no settings and no recent activity.

  KEYS[1]  meta       HASH   seq counter and settings (paused, max_running, rate_limit)
  KEYS[2]  labelsets  HASH   field = label-set id, value = JSON array of labels
  KEYS[3]  delayed    ZSET   member = job id, score = due time (ms)
  KEYS[4]  leases     ZSET   member = job id, score = lease deadline (ms)
  KEYS[5]  done       ZSET   member = job id, score = purge time (ms)
  KEYS[6]  index      ZSET   member = job id, score = enqueue sequence (every job until purged)
  KEYS[7]  stats      HASH   lifecycle counters
  KEYS[8]  events     STREAM state transitions (entry ids carry Redis time)
  KEYS[9]  rate       STRING the current rate-limit window

  ARGV[1]  now_ms   integer, or "" for Redis TIME
  ARGV[2]  idle_ms  integer >= 0, the queue must have had no event for this long

  Returns  {"OK"}         the queue's keys are gone; the caller may drop it from the queue index
           {"LIVE"}       a job exists (ready, delayed, running, waiting or not yet purged)
           {"SETTINGS"}   the queue is paused or has max_running or a rate limit
           {"ACTIVE"}     its last event is more recent than idle_ms
  Errors   error "BAD_ARG <name>" for malformed ARGV, before any write
  Writes   DEL meta, labelsets, stats, events, rate (only on OK)
  Derived  none
  Bounds   creates nothing; it is what bounds the keys a queue keeps once it has no jobs
  Cost     O(1) checks; the DEL frees the capped events stream, O(its entries)
]]
-- @include base

local now = clock(ARGV[1])
local idle_ms = num(ARGV[2], "idle_ms")

for _, key in ipairs({KEYS[6], KEYS[3], KEYS[4], KEYS[5]}) do
  if redis.call("ZCARD", key) > 0 then return {"LIVE"} end
end
local meta = redis.call("HMGET", KEYS[1], "paused", "max_running", "rate_limit")
if meta[1] == "1" or (tonumber(meta[2]) or 0) > 0 or (tonumber(meta[3]) or 0) > 0 then
  return {"SETTINGS"}
end
local last = redis.call("XREVRANGE", KEYS[8], "+", "-", "COUNT", 1)[1]
if last and tonumber(string.match(last[1], "^(%d+)")) > now - idle_ms then return {"ACTIVE"} end
-- Every ready job is in the index, so with the index empty any label set left is stale.
redis.call("DEL", KEYS[1], KEYS[2], KEYS[7], KEYS[8], KEYS[9])
return {"OK"}
