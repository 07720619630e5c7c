--[[
  cancel_run: cancel every job of a workflow run that has not ended; running ones learn it on
  their next heartbeat and are refused at completion. Dependants are cancelled, not skipped.

  KEYS[1]  meta     HASH   (prefix of the run, workflow and job keys)
  KEYS[2]  leases   ZSET   member = job id, score = lease deadline (ms)
  KEYS[3]  delayed  ZSET   member = job id, score = due time (ms)
  KEYS[4]  done     ZSET   member = job id, score = purge time (ms)
  KEYS[5]  stats    HASH   lifecycle counters
  KEYS[6]  events   STREAM state transitions

  ARGV[1]  now_ms        integer, or "" for Redis TIME
  ARGV[2]  events_maxlen integer > 0
  ARGV[3]  workflow_id   string

  Returns  {"OK", run_id, cancelled_count} | {"NOT_FOUND"} (no run is active)
  Errors   error "BAD_ARG <name>" for malformed ARGV, before any write
  Writes   per job: HSET job:<id>; ZREM ready:<lsid> | delayed | leases; ZADD done; stats; events;
           HSET wfrun:<run_id> cancel_requested
  Derived  P job:<id>      HASH   the job record (id from ARGV or a set member)
           P wf:<id>       HASH   active_run and run counter of a workflow
           P wfrun:<run>   HASH   one workflow run
  Bounds   P job:<id>: deleted at its purge time, result TTL after it ends (PEXPIRE backstop)
           done: one member per terminal job until its purge time
           stats: one counter per kind and status; deleted with an idle empty queue
           events: MAXLEN ~ events_maxlen; deleted with an idle empty queue
           P wf:<id>, P wfrun:<run>, P wfruns:<id>: per workflow and run (run retention)
  Cost     O(jobs of the run * log N)
]]
-- @include base
-- @include finish

local P = prefix_of(KEYS[1])
local ctx = {P = P, now = clock(ARGV[1]), maxlen = num(ARGV[2], "events_maxlen"), no_cascade = true}
local workflow_id = ARGV[3]

local run_id = redis.call("HGET", P .. "wf:" .. workflow_id, "active_run")
if not run_id then return {"NOT_FOUND"} end
local run_key = P .. "wfrun:" .. run_id
redis.call("HSET", run_key, "cancel_requested", 1)
local cancelled = 0
for _, job_id in pairs(cjson.decode(redis.call("HGET", run_key, "jobs") or "{}")) do
  local job_key = P .. "job:" .. job_id
  local status = redis.call("HGET", job_key, "status")
  if status == "running" then
    redis.call("HSET", job_key, "lease_state", "cancelled")
    finish(ctx, job_key, job_id, "cancelled", status)
    redis.call("ZREM", KEYS[2], job_id)
    cancelled = cancelled + 1
  elseif status == "queued" then
    unplace(ctx, job_key, job_id)
    finish(ctx, job_key, job_id, "cancelled", status)
    cancelled = cancelled + 1
  end
end
announce(ctx)
return {"OK", run_id, cancelled}
