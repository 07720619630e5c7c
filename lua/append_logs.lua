--[[
  append_logs: append a batch of log chunks to a job's stream, fenced by the caller's lease.

  KEYS[1]  meta     HASH   (prefix of the job and log keys)

  ARGV[1]  now_ms        integer, or "" for Redis TIME
  ARGV[2]  job_id        string
  ARGV[3]  lease_id      string
  ARGV[4]  worker_id     string, "" to skip the ownership check
  ARGV[5]  log_maxlen    integer > 0, approximate cap of the stream (XADD MAXLEN ~)
  ARGV[6]  count         integer, chunks that follow
  ARGV[7]  log_max_bytes integer > 0, cap of the job's log data in bytes (all attempts)
  then per chunk: sequence (integer, or "" for none), stream (stdout|stderr|system), data,
                  timestamp_ms (integer, or "" for now)

  Returns  {"OK", appended, dropped, last_entry_id}   dropped = chunks whose sequence this lease
           had already stored (a retried batch); last_entry_id = "" when nothing was appended
           {"LOG_TOO_LARGE", appended, dropped, last_entry_id}   a chunk would pass the cap: the
           chunks before it are kept, it and the rest are not; the first time, one `system`
           chunk saying the log was truncated is appended (and later pushes store nothing)
           {"LEASE_NOT_FOUND"} | {"LEASE_SUPERSEDED"} | {"LEASE_EXPIRED"} | {"LEASE_RELEASED"}
           | {"JOB_CANCELLED"} | {"JOB_FINISHED"} | {"NOT_OWNER"}
  Errors   error "BAD_ARG <name>" for malformed ARGV, before any write
  Writes   XADD log:<id>; HSET job:<id> log_lease, log_seq, log_bytes, log_truncated
  Derived  P job:<id>      HASH   the job record (id from ARGV)
           P log:<id>      STREAM the job's log
  Bounds   log:<id> is created only by a chunk; it holds at most log_max_bytes of data (plus the
           truncation notice) and log_maxlen entries, and expires with the job (finish sets its
           expiry, the reaper's purge deletes it)
  Cost     O(count)
]]
-- @include base
-- @include fence

local P = prefix_of(KEYS[1])
local ctx = {P = P, now = clock(ARGV[1])}
local job_id, lease_id, worker_id = ARGV[2], ARGV[3], ARGV[4]
local maxlen = num(ARGV[5], "log_maxlen")
local count = num(ARGV[6], "count")
local max_bytes = num(ARGV[7], "log_max_bytes")
for i = 0, count - 1 do
  local base = 8 + i * 4
  if ARGV[base] ~= "" then num(ARGV[base], "sequence") end
  if ARGV[base + 3] ~= "" then num(ARGV[base + 3], "timestamp_ms") end
end

local job_key = P .. "job:" .. job_id
local verdict = fence(ctx, job_key, lease_id, worker_id)
if verdict ~= "OK" then return {verdict} end

local f = redis.call("HMGET", job_key, "log_lease", "log_seq", "attempt", "log_bytes",
  "log_truncated")
if f[5] then return {"LOG_TOO_LARGE", 0, 0, ""} end
local last_seq = -1
if f[1] == lease_id then last_seq = tonumber(f[2]) or -1 end
local bytes = tonumber(f[4]) or 0
local log_key = P .. "log:" .. job_id
local appended, dropped, last_id, full = 0, 0, "", false
for i = 0, count - 1 do
  local base = 8 + i * 4
  local seq = tonumber(ARGV[base])
  if seq ~= nil and seq <= last_seq then
    dropped = dropped + 1
  elseif bytes + #ARGV[base + 2] > max_bytes then
    full = true
    break
  else
    if seq ~= nil then last_seq = seq end
    local ts = ARGV[base + 3]
    if ts == "" then ts = ctx.now end
    bytes = bytes + #ARGV[base + 2]
    last_id = redis.call("XADD", log_key, "MAXLEN", "~", maxlen, "*", "seq", ARGV[base],
      "stream", ARGV[base + 1], "data", ARGV[base + 2], "ts", ts, "attempt", f[3] or 0)
    appended = appended + 1
  end
end
redis.call("HSET", job_key, "log_lease", lease_id, "log_seq", last_seq, "log_bytes", bytes)
if not full then return {"OK", appended, dropped, last_id} end
redis.call("XADD", log_key, "MAXLEN", "~", maxlen, "*", "seq", "", "stream", "system",
  "data", "log truncated: this job's log reached its cap of " .. max_bytes .. " bytes\n",
  "ts", ctx.now, "attempt", f[3] or 0)
redis.call("HSET", job_key, "log_truncated", 1)
return {"LOG_TOO_LARGE", appended, dropped, last_id}
