--[[
  release: hand the caller's job back to its place in the queue without consuming an attempt.

  KEYS[1]  meta       HASH   (prefix of the job key)
  KEYS[2]  leases     ZSET   member = job id, score = lease deadline (ms)
  KEYS[3]  labelsets  HASH   field = label-set id, value = JSON array of labels
  KEYS[4]  events     STREAM state transitions

  ARGV[1]  now_ms        integer, or "" for Redis TIME
  ARGV[2]  events_maxlen integer > 0
  ARGV[3]  job_id        string
  ARGV[4]  lease_id      string
  ARGV[5]  worker_id     string, "" to skip the ownership check

  Returns  {"OK"}
           {"REPLAYED", "OK", ""}  this lease already released the job: its reply again
           {"LEASE_NOT_FOUND"} | {"LEASE_SUPERSEDED"} | {"LEASE_EXPIRED"} | {"LEASE_RELEASED"}
           | {"JOB_CANCELLED"} | {"JOB_FINISHED"} | {"NOT_OWNER"}
  Errors   error "BAD_ARG <name>" for malformed ARGV, before any write
  Writes   HSET job:<id> status, lease_state, last_reply; ZADD ready:<lsid>; ZREM leases; events
  Derived  P job:<id>      HASH   the job record (id from ARGV or a set member)
  Bounds   P ready:<lsid>: one member per ready job; gone when empty, with its labelsets entry
           labelsets: only label sets with ready jobs
           events: MAXLEN ~ events_maxlen; deleted with an idle empty queue
  Cost     O(log N)
]]
-- @include base
-- @include fence

local P = prefix_of(KEYS[1])
local ctx = {P = P, now = clock(ARGV[1]), maxlen = num(ARGV[2], "events_maxlen")}
local job_id, lease_id, worker_id = ARGV[3], ARGV[4], ARGV[5]

local job_key = P .. "job:" .. job_id
local verdict = fence(ctx, job_key, lease_id, worker_id)
if verdict ~= "OK" then
  return replay(job_key, "release", lease_id, worker_id) or {verdict}
end

redis.call("HSET", job_key, "status", "queued", "lease_state", "released")
remember_reply(job_key, "r", "O", lease_id)
place_ready(ctx, job_key, job_id, false)
redis.call("ZREM", KEYS[2], job_id)
local f = redis.call("HMGET", job_key, "attempt", "workflow_id")
emit(ctx, job_id, "running", "queued", f[1], lease_id, f[2])
wake(ctx)
return {"OK"}
