--[[
  reap: expire leases past their deadline (retry or fail), promote due delayed jobs, purge old results.

  KEYS[1]  meta       HASH   seq counter (prefix of job keys)
  KEYS[2]  leases     ZSET   member = job id, score = lease deadline (ms)
  KEYS[3]  delayed    ZSET   member = job id, score = due time (ms)
  KEYS[4]  labelsets  HASH   field = label-set id, value = JSON array of labels
  KEYS[5]  done       ZSET   member = job id, score = purge time (ms)
  KEYS[6]  index      ZSET   member = job id, score = enqueue sequence
  KEYS[7]  stats      HASH   lifecycle counters
  KEYS[8]  events     STREAM state transitions

  ARGV[1]  now_ms        integer, or "" for Redis TIME
  ARGV[2]  events_maxlen integer > 0
  ARGV[3]  batch         integer > 0, the most items handled per kind of work
  ARGV[4]  seed          integer, seeds the backoff jitter

  Returns  {"OK", expired, promoted, purged, more, next_due_ms}   more = 1 when a batch was
           full; next_due_ms = the earliest head of leases, delayed and done ("" = none), when
           this queue next has work for a reaper
  Errors   error "BAD_ARG <name>" for malformed ARGV, before any write
  Writes   per expired lease: HSET job:<id>, ZREM leases, ZADD delayed | ready:<lsid> | done;
           per purge: DEL job:<id>, log:<id> and its artifacts (art:<id>, each
           artdata:<upload>), DECRBY artbytes, ZREM done and index; stats; events
  Derived  P job:<id>      HASH   the job record (id from ARGV or a set member)
           P log:<id>      STREAM the job's log
           P art:<id>      HASH   the job's artifact index (deleted with the job)
           P artdata:<upload> HASH chunks of one artifact (deleted with the job)
           P artbytes      STRING the queue's artifact bytes (deleted at zero)
  Bounds   P job:<id>: deleted at its purge time, result TTL after it ends (PEXPIRE backstop)
           delayed: one member per delayed job
           P ready:<lsid>: one member per ready job; gone when empty, with its labelsets entry
           labelsets: only label sets with ready jobs
           done: one member per terminal job until its purge time
           stats: one counter per kind and status; deleted with an idle empty queue
           events: MAXLEN ~ events_maxlen; deleted with an idle empty queue
  Cost     O(batch * log N)
]]
-- @include base
-- @include finish
-- @include backoff
-- @include artifacts

local P = prefix_of(KEYS[1])
local ctx = {P = P, now = clock(ARGV[1]), maxlen = num(ARGV[2], "events_maxlen")}
local batch = num(ARGV[3], "batch")
math.randomseed(num(ARGV[4], "seed"))

local expired = redis.call("ZRANGEBYSCORE", KEYS[2], "-inf", ctx.now, "LIMIT", 0, batch)
for _, id in ipairs(expired) do
  local job_key = P .. "job:" .. id
  local f = redis.call("HMGET", job_key, "status", "timeout_at_ms", "lease_expires_at_ms")
  if f[1] == "running" then
    local timeout_at = tonumber(f[2]) or 0
    local reason = "lease_expired"
    -- What ended the lease decides the reason, not how late this reaper looked at it.
    if timeout_at > 0 and (tonumber(f[3]) or 0) >= timeout_at then reason = "timeout" end
    redis.call("HSET", job_key, "lease_state", "expired")
    redis.call("HINCRBY", KEYS[7], "leases_expired", 1)
    retry_or_fail(ctx, job_key, id, reason, math.random())
  end
  redis.call("ZREM", KEYS[2], id)
end

local promoted = promote(ctx, batch)

local purge = redis.call("ZRANGEBYSCORE", KEYS[5], "-inf", ctx.now, "LIMIT", 0, batch)
for _, id in ipairs(purge) do
  local job_key = P .. "job:" .. id
  local status = redis.call("HGET", job_key, "status")
  if status then redis.call("HINCRBY", KEYS[7], "count:" .. status, -1) end
  redis.call("ZREM", KEYS[6], id)
  redis.call("DEL", job_key, P .. "log:" .. id)
  drop_artifacts(P, id)
  redis.call("ZREM", KEYS[5], id)
end

wake(ctx)
local more = 0
if #expired == batch or promoted == batch or #purge == batch then more = 1 end
local next_due = ""
for _, key in ipairs({KEYS[2], KEYS[3], KEYS[5]}) do
  local head = redis.call("ZRANGE", key, 0, 0, "WITHSCORES")[2]
  if head and (next_due == "" or tonumber(head) < next_due) then next_due = tonumber(head) end
end
return {"OK", #expired, promoted, #purge, more, next_due}
