--[[
  unindex_queue: drop a queue from the queue index unless it was active after a cutoff.

  KEYS[1]  queues  ZSET   {<ns>}:queues, member = queue name, score = last activity (ms)

  ARGV[1]  queue      string
  ARGV[2]  cutoff_ms  integer, the queue leaves only if its last activity is at or before this

  Returns  {"OK", removed (0|1)}   0 when the queue was touched after the cutoff (a submit raced
           the forgetting: the queue stays, and the next sweep looks again)
  Errors   error "BAD_ARG <name>" for malformed ARGV, before any write
  Writes   ZREM queues
  Derived  none
  Bounds   creates nothing; the index holds queues with jobs, settings or recent activity
  Cost     O(log Q)
]]
-- @include base

local cutoff = num(ARGV[2], "cutoff_ms")
local score = tonumber(redis.call("ZSCORE", KEYS[1], ARGV[1]))
if score == nil or score > cutoff then return {"OK", 0} end
redis.call("ZREM", KEYS[1], ARGV[1])
return {"OK", 1}
