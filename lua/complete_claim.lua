--[[
  complete_claim: finish the caller's lease with success, then claim again in the same queue for
  a worker, in one round trip (one request per job).

  KEYS[1]  meta       HASH   (prefix of the job key) paused, max_running, rate_limit, rate_per_ms
  KEYS[2]  leases     ZSET   member = job id, score = lease deadline (ms)
  KEYS[3]  done       ZSET   member = job id, score = purge time (ms)
  KEYS[4]  stats      HASH   lifecycle counters
  KEYS[5]  events     STREAM state transitions
  KEYS[6]  labelsets  HASH   field = label-set id, value = JSON array of labels
  KEYS[7]  delayed    ZSET   member = job id, score = due time (ms)
  KEYS[8]  rate       STRING "<window start ms>:<claims>" of the current rate-limit window

  ARGV[1]  now_ms         integer, or "" for Redis TIME
  ARGV[2]  events_maxlen  integer > 0
  ARGV[3]  job_id         string
  ARGV[4]  lease_id       string
  ARGV[5]  worker_id      string, "" to skip the ownership check
  ARGV[6]  outputs        string, JSON object
  ARGV[7]  verification   string, the value this completion vouches for (jobs with a quorum)
  ARGV[8]  claimer        string, the worker the next jobs are leased to
  ARGV[9]  worker_labels  string, JSON array of the claimer's labels
  ARGV[10] lease_ttl_ms   integer > 0, or "" for the job's own lease_ttl_ms
  ARGV[11] promote_batch  integer > 0
  ARGV[12] default_ttl_ms integer > 0
  ARGV[13..] lease tokens, one random string per job wanted

  Returns  {complete's reply, claim's reply} (see complete.lua and claim.lua) when the lease
           completed or its completion is replayed; {status} alone (complete's error statuses)
           when it cannot complete: then nothing is claimed
  Errors   error "BAD_ARG <name>" for malformed ARGV, before any write
  Writes   what complete.lua and then claim.lua write
  Derived  P delayed       ZSET   delayed jobs
           P job:<id>      HASH   the job record (id from ARGV or a set member)
           P labelsets     HASH   label-set index
           P leases        ZSET   running jobs
           P meta          HASH   (also KEYS[1])
           P ready:<lsid>  ZSET   ready jobs of one label set
           P stats         HASH   lifecycle counters
  Bounds   as complete.lua and claim.lua: P job:<id> deleted at its purge time; done one member
           per terminal job until its purge time; P ready:<lsid> one member per ready job, gone
           when empty with its labelsets entry; leases one member per running job; stats one
           counter per kind and status; events MAXLEN ~ events_maxlen; rate expires with its
           window
  Cost     complete's O(log N + dependants) plus claim's O(L + (max_jobs + 64) * (log N + D))
]]
-- @include base
-- @include finish
-- @include fence
-- @include quorum
-- @include complete
-- @include upstream
-- @include rate
-- @include claim

local P = prefix_of(KEYS[1])
local ctx = {P = P, now = clock(ARGV[1]), maxlen = num(ARGV[2], "events_maxlen")}
local job_id, lease_id, worker_id, outputs = ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local lease_ttl_arg = ARGV[10]
if lease_ttl_arg ~= "" then num(lease_ttl_arg, "lease_ttl_ms") end
local args = {worker_id = ARGV[8], worker_labels = cjson.decode(ARGV[9]),
  lease_ttl_arg = lease_ttl_arg, promote_batch = num(ARGV[11], "promote_batch"),
  default_ttl = num(ARGV[12], "default_ttl_ms"), rate_key = KEYS[8], tokens = {}}
for i = 13, #ARGV do args.tokens[#args.tokens + 1] = ARGV[i] end

local function finish_lease()
  return complete_lease(ctx, KEYS[2], job_id, lease_id, worker_id, outputs, ARGV[7] or "")
end

local done = finish_lease()
if done[1] ~= "OK" and done[1] ~= "REPLAYED" then return {done[1]} end
return {done, claim_jobs(ctx, args)}
