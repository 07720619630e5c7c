--[[
  fail: end the caller's lease with an error; retryable failures consume an attempt and back off.

  KEYS[1]  meta       HASH   seq counter (prefix of the job key)
  KEYS[2]  leases     ZSET   member = job id, score = lease deadline (ms)
  KEYS[3]  delayed    ZSET   member = job id, score = due time (ms)
  KEYS[4]  labelsets  HASH   field = label-set id, value = JSON array of labels
  KEYS[5]  done       ZSET   member = job id, score = purge time (ms)
  KEYS[6]  stats      HASH   lifecycle counters
  KEYS[7]  events     STREAM state transitions

  ARGV[1]  now_ms        integer, or "" for Redis TIME
  ARGV[2]  events_maxlen integer > 0
  ARGV[3]  job_id        string
  ARGV[4]  lease_id      string
  ARGV[5]  worker_id     string, "" to skip the ownership check
  ARGV[6]  error         string, the failure reason
  ARGV[7]  retryable     "1" consumes an attempt and retries if any is left; "0" fails for good
  ARGV[8]  rand          number in [0, 1), drives the backoff jitter

  Returns  {"RETRY", due_ms, run_ms} | {"FAILED", "", run_ms}   run_ms = this attempt's run time
           {"REPLAYED", "RETRY"|"FAILED", due_ms|""}  this lease already failed the job: its
           reply again
           {"LEASE_NOT_FOUND"} | {"LEASE_SUPERSEDED"} | {"LEASE_EXPIRED"} | {"LEASE_RELEASED"}
           | {"JOB_CANCELLED"} | {"JOB_FINISHED"} | {"NOT_OWNER"}
  Errors   error "BAD_ARG <name>" for malformed ARGV, before any write
  Writes   HSET job:<id> (with last_reply); ZREM leases; ZADD delayed or ready:<lsid> or done; stats; events
  Derived  P job:<id>      HASH   the job record (id from ARGV or a set member)
  Bounds   P job:<id>: deleted at its purge time, result TTL after it ends (PEXPIRE backstop)
           delayed: one member per delayed job
           P ready:<lsid>: one member per ready job; gone when empty, with its labelsets entry
           labelsets: only label sets with ready jobs
           done: one member per terminal job until its purge time
           stats: one counter per kind and status; deleted with an idle empty queue
           events: MAXLEN ~ events_maxlen; deleted with an idle empty queue
  Cost     O(log N)
]]
-- @include base
-- @include finish
-- @include fence
-- @include backoff

local P = prefix_of(KEYS[1])
local ctx = {P = P, now = clock(ARGV[1]), maxlen = num(ARGV[2], "events_maxlen")}
local job_id, lease_id, worker_id, error_text = ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local retryable = ARGV[7] == "1"
local rand = num(ARGV[8], "rand")

local job_key = P .. "job:" .. job_id
local verdict = fence(ctx, job_key, lease_id, worker_id)
if verdict ~= "OK" then
  return replay(job_key, "fail", lease_id, worker_id) or {verdict}
end

local run_ms = ctx.now - (tonumber(redis.call("HGET", job_key, "started_at_ms")) or ctx.now)
redis.call("HSET", job_key, "lease_state", "failed")
local reply
if retryable then
  reply = retry_or_fail(ctx, job_key, job_id, error_text, rand)
else
  redis.call("HSET", job_key, "error", error_text)
  finish(ctx, job_key, job_id, "failure", "running")
  reply = {"FAILED", ""}
end
if reply[1] == "FAILED" then reply[2] = "" end
reply[3] = run_ms
if reply[1] == "RETRY" then remember_reply(job_key, "f", "R", lease_id, reply[2]) end
redis.call("ZREM", KEYS[2], job_id)
wake(ctx)
return reply
