--[[
  promote: move delayed jobs whose time has come into their ready sets.

  KEYS[1]  meta       HASH   (prefix of job keys)
  KEYS[2]  delayed    ZSET   member = job id, score = due time (ms)
  KEYS[3]  labelsets  HASH   field = label-set id, value = JSON array of labels

  ARGV[1]  now_ms  integer, or "" for Redis TIME
  ARGV[2]  batch   integer > 0, the most jobs promoted

  Returns  {"OK", promoted, next_due_ms}   next_due_ms = "" when nothing is delayed
  Errors   error "BAD_ARG <name>" for malformed ARGV, before any write
  Writes   ZADD ready:<lsid>; ZREM delayed; HSET labelsets
  Derived  none in this body (lib/base builds P job:<id> and P ready:<lsid> for it)
  Bounds   P ready:<lsid>: one member per ready job; gone when empty, with its labelsets entry
           labelsets: only label sets with ready jobs
  Cost     O(batch * log N)
]]
-- @include base

local P = prefix_of(KEYS[1])
local ctx = {P = P, now = clock(ARGV[1])}
local promoted = promote(ctx, num(ARGV[2], "batch"))
wake(ctx)
local next_due = redis.call("ZRANGE", KEYS[2], 0, 0, "WITHSCORES")
return {"OK", promoted, next_due[2] or ""}
