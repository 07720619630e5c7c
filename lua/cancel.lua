--[[
  cancel: move a queued or running job to cancelled; a running job's lease learns it on heartbeat.

  KEYS[1]  meta     HASH   (prefix of the job key)
  KEYS[2]  leases   ZSET   member = job id, score = lease deadline (ms)
  KEYS[3]  delayed  ZSET   member = job id, score = due time (ms)
  KEYS[4]  done     ZSET   member = job id, score = purge time (ms)
  KEYS[5]  stats    HASH   lifecycle counters
  KEYS[6]  events   STREAM state transitions

  ARGV[1]  now_ms        integer, or "" for Redis TIME
  ARGV[2]  events_maxlen integer > 0
  ARGV[3]  job_id        string

  Returns  {"OK", previous_status}
           {"NOT_FOUND"} | {"JOB_FINISHED", status}
  Errors   error "BAD_ARG <name>" for malformed ARGV, before any write
  Writes   HSET job:<id>; ZREM ready:<lsid> | delayed | leases; ZADD done; stats; events
  Derived  P job:<id>      HASH   the job record (id from ARGV or a set member)
  Bounds   P job:<id>: deleted at its purge time, result TTL after it ends (PEXPIRE backstop)
           done: one member per terminal job until its purge time
           stats: one counter per kind and status; deleted with an idle empty queue
           events: MAXLEN ~ events_maxlen; deleted with an idle empty queue
  Cost     O(log N)
]]
-- @include base
-- @include finish

local P = prefix_of(KEYS[1])
local ctx = {P = P, now = clock(ARGV[1]), maxlen = num(ARGV[2], "events_maxlen")}
local job_id = ARGV[3]

local job_key = P .. "job:" .. job_id
local status = redis.call("HGET", job_key, "status")
if not status then return {"NOT_FOUND"} end
if status ~= "queued" and status ~= "running" then return {"JOB_FINISHED", status} end

if status == "running" then
  redis.call("HSET", job_key, "lease_state", "cancelled")
  finish(ctx, job_key, job_id, "cancelled", status)
  redis.call("ZREM", KEYS[2], job_id)
else
  unplace(ctx, job_key, job_id)
  finish(ctx, job_key, job_id, "cancelled", status)
end
announce(ctx)
return {"OK", status}
