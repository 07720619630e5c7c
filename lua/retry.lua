--[[
  retry: an operator sends a failed or cancelled job back to the queue with a fresh attempt budget.

  KEYS[1]  meta       HASH   seq counter (prefix of the job key)
  KEYS[2]  labelsets  HASH   field = label-set id, value = JSON array of labels
  KEYS[3]  done       ZSET   member = job id, score = purge time (ms)
  KEYS[4]  stats      HASH   lifecycle counters
  KEYS[5]  events     STREAM state transitions

  ARGV[1]  now_ms        integer, or "" for Redis TIME
  ARGV[2]  events_maxlen integer > 0
  ARGV[3]  job_id        string

  Returns  {"OK", previous_status}
           {"NOT_FOUND"} | {"INVALID_STATE", status} | {"WORKFLOW_JOB", status} (a job of a workflow
           run is not retried alone: its run has counted it and skipped its dependants)
  Errors   error "BAD_ARG <name>" for malformed ARGV, before any write
  Writes   HSET job:<id>; ZADD ready:<lsid>; ZREM done; PERSIST job:<id>; stats; events
  Derived  P job:<id>      HASH   the job record (id from ARGV or a set member)
           P log:<id>      STREAM the job's log
           P unique:<key>  STRING job id holding a unique_key
  Bounds   P job:<id>: deleted at its purge time, result TTL after it ends (PEXPIRE backstop)
           P ready:<lsid>: one member per ready job; gone when empty, with its labelsets entry
           labelsets: only label sets with ready jobs
           P unique:<key>: expires unique_ttl after its job ends
           stats: one counter per kind and status; deleted with an idle empty queue
           events: MAXLEN ~ events_maxlen; deleted with an idle empty queue
  Cost     O(log N)
]]
-- @include base

local P = prefix_of(KEYS[1])
local ctx = {P = P, now = clock(ARGV[1]), maxlen = num(ARGV[2], "events_maxlen")}
local job_id = ARGV[3]

local job_key = P .. "job:" .. job_id
local status = redis.call("HGET", job_key, "status")
if not status then return {"NOT_FOUND"} end
if status ~= "failure" and status ~= "cancelled" then return {"INVALID_STATE", status} end
local run_id = redis.call("HGET", job_key, "run_id")
if run_id and run_id ~= "" then return {"WORKFLOW_JOB", status} end

redis.call("HSET", job_key, "status", "queued", "attempt", 0, "error", "", "finished_at_ms", "",
  "delayed_until_ms", 0)
place_ready(ctx, job_key, job_id, true)
redis.call("ZREM", KEYS[3], job_id)
redis.call("PERSIST", job_key)
redis.call("PERSIST", P .. "log:" .. job_id)
redis.call("HINCRBY", KEYS[4], "count:" .. status, -1)
local f = redis.call("HMGET", job_key, "unique_key", "workflow_id")
if f[1] and f[1] ~= "" then
  local unique_key = P .. "unique:" .. f[1]
  local holder = redis.call("GET", unique_key)
  if not holder or holder == job_id then redis.call("SET", unique_key, job_id) end
end
emit(ctx, job_id, status, "queued", 0, "", f[2])
wake(ctx)
return {"OK", status}
