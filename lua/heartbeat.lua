--[[
  heartbeat: extend the caller's lease and record progress; a cancelled job answers cancelled = 1.

  KEYS[1]  meta     HASH   (prefix of the job key)
  KEYS[2]  leases   ZSET   member = job id, score = lease deadline (ms)

  ARGV[1]  now_ms        integer, or "" for Redis TIME
  ARGV[2]  job_id        string
  ARGV[3]  lease_id      string
  ARGV[4]  worker_id     string, "" to skip the ownership check (admin, auth off)
  ARGV[5]  lease_ttl_ms  integer > 0, or "" to reuse the lease's current TTL
  ARGV[6]  progress      integer 0..100, or "" to keep
  ARGV[7]  has_message   "1" to set progress_message to ARGV[8]
  ARGV[8]  message       string

  Returns  {"OK", expires_at_ms, ttl_ms, granted_at_ms, attempt, cancelled (0|1), worker_id,
            job_name, workflow_id}
           {"LEASE_NOT_FOUND"} | {"LEASE_SUPERSEDED"} | {"LEASE_EXPIRED"} | {"LEASE_RELEASED"}
           | {"JOB_FINISHED"} | {"NOT_OWNER"}
  Errors   error "BAD_ARG <name>" for malformed ARGV, before any write
  Writes   ZADD leases XX; HSET job:<id> lease_expires_at_ms, progress
  Derived  P job:<id>      HASH   the job record (id from ARGV or a set member)
  Bounds   P job:<id>: deleted at its purge time, result TTL after it ends (PEXPIRE backstop)
  Cost     O(log N)
]]
-- @include base
-- @include fence

local P = prefix_of(KEYS[1])
local ctx = {P = P, now = clock(ARGV[1])}
local job_id, lease_id, worker_id = ARGV[2], ARGV[3], ARGV[4]
if ARGV[5] ~= "" then num(ARGV[5], "lease_ttl_ms") end
if ARGV[6] ~= "" then num(ARGV[6], "progress") end

local job_key = P .. "job:" .. job_id
local verdict = fence(ctx, job_key, lease_id, worker_id)
local cancelled = 0
if verdict == "JOB_CANCELLED" then
  cancelled = 1
elseif verdict ~= "OK" then
  return {verdict}
end

local f = redis.call("HMGET", job_key, "lease_ttl_cur_ms", "timeout_at_ms", "lease_expires_at_ms",
  "attempt", "worker_id", "job_id", "workflow_id")
local ttl = tonumber(ARGV[5]) or tonumber(f[1])
local expires = tonumber(f[3])
if cancelled == 0 then
  expires = ctx.now + ttl
  local timeout_at = tonumber(f[2]) or 0
  if timeout_at > 0 and timeout_at < expires then expires = timeout_at end
  redis.call("ZADD", KEYS[2], "XX", expires, job_id)
  if expires < tonumber(f[3]) then note_due(ctx, "leases", job_id, expires) end
  redis.call("HSET", job_key, "lease_expires_at_ms", expires, "lease_ttl_cur_ms", ttl,
    "lease_granted_at_ms", ctx.now)
  if ARGV[6] ~= "" then redis.call("HSET", job_key, "progress", ARGV[6]) end
  if ARGV[7] == "1" then redis.call("HSET", job_key, "progress_message", ARGV[8]) end
end
announce(ctx)
local granted = redis.call("HGET", job_key, "lease_granted_at_ms")
return {"OK", expires, ttl, granted, f[4], cancelled, f[5], f[6] or "", f[7] or ""}
