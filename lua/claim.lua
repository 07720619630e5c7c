--[[
  claim: lease up to max_jobs of the best ready jobs whose required labels the worker has.

  KEYS[1]  meta       HASH   paused, max_running, rate_limit, rate_per_ms, seq
  KEYS[2]  labelsets  HASH   field = label-set id, value = JSON array of labels
  KEYS[3]  delayed    ZSET   member = job id, score = due time (ms)
  KEYS[4]  leases     ZSET   member = job id, score = lease deadline (ms)
  KEYS[5]  stats      HASH   lifecycle counters
  KEYS[6]  events     STREAM state transitions
  KEYS[7]  rate       STRING "<window start ms>:<claims>" of the current rate-limit window

  ARGV[1]  now_ms        integer, or "" for Redis TIME
  ARGV[2]  events_maxlen integer > 0
  ARGV[3]  worker_id     string
  ARGV[4]  worker_labels string, JSON array of the worker's labels
  ARGV[5]  lease_ttl_ms  integer > 0, or "" for the job's own lease_ttl_ms
  ARGV[6]  promote_batch integer > 0, due delayed jobs promoted first
  ARGV[7]  default_ttl_ms integer > 0, the lease TTL when neither the claim nor the job sets one
  ARGV[8..] lease tokens, one random string per job wanted (their count is max_jobs)

  Returns  {"OK", {job fields...}, ...}   one flat HGETALL array per leased job (possibly none);
           a workflow job's array ends with "upstream_outputs", '{"<dep name>":<outputs text>,...}'
           assembled from its direct dependencies' stored outputs (never decoded)
           {"EMPTY", next_due_ms, now_ms} nothing claimable; next_due_ms = "" when nothing is delayed
           {"PAUSED", "", now_ms} | {"FULL", "", now_ms} | {"RATE_LIMITED", due_ms, now_ms}
  Errors   error "BAD_ARG <name>" for malformed ARGV, before any write
  Writes   ZREM ready:<lsid>; ZADD leases; HSET job:<id>; stats; events; promotes delayed jobs
  Derived  P delayed       ZSET   delayed jobs
           P job:<id>      HASH   the job record (id from ARGV or a set member)
           P labelsets     HASH   label-set index
           P leases        ZSET   running jobs
           P meta          HASH   (also KEYS[1])
           P ready:<lsid>  ZSET   ready jobs of one label set
           P stats         HASH   lifecycle counters
  Bounds   P ready:<lsid>: one member per ready job; gone when empty, with its labelsets entry
           labelsets: only label sets with ready jobs
           leases: one member per running job
           stats: one counter per kind and status; deleted with an idle empty queue
           events: MAXLEN ~ events_maxlen; deleted with an idle empty queue
           rate: expires at the end of its window
  Cost     O(L + (max_jobs + 64) * (log N + D)), L = number of distinct label sets with ready
           jobs, D = direct dependencies of a workflow job (plus the bytes of their outputs);
           jobs this worker already verified (quorum jobs, field vby:<worker>) are looked past,
           at most 64 per call (VERIFY_SKIP_WINDOW): past that the claim returns what it has
]]
-- @include base
-- @include upstream
-- @include rate

local P = prefix_of(KEYS[1])
local ctx = {P = P, now = clock(ARGV[1]), maxlen = num(ARGV[2], "events_maxlen")}
local worker_id = ARGV[3]
local worker_labels = cjson.decode(ARGV[4])
local lease_ttl_arg = ARGV[5]
if lease_ttl_arg ~= "" then num(lease_ttl_arg, "lease_ttl_ms") end
local promote_batch = num(ARGV[6], "promote_batch")
local default_ttl = num(ARGV[7], "default_ttl_ms")
local wanted = #ARGV - 7
local VERIFY_SKIP_WINDOW = 64

promote(ctx, promote_batch)

local meta = redis.call("HMGET", P .. "meta", "paused", "max_running", "rate_limit", "rate_per_ms")
if meta[1] == "1" then return {"PAUSED", "", ctx.now} end
local max_running = tonumber(meta[2]) or 0
if max_running > 0 then
  wanted = math.min(wanted, max_running - redis.call("ZCARD", P .. "leases"))
  if wanted <= 0 then return {"FULL", "", ctx.now} end
end
local rate_limit = tonumber(meta[3]) or 0
local rate_per = math.max(tonumber(meta[4]) or 1000, 1)
local rate_start, rate_used = ctx.now, 0
if rate_limit > 0 then
  rate_start, rate_used = rate_window(KEYS[7], ctx.now, rate_per)
  wanted = math.min(wanted, rate_limit - rate_used)
  if wanted <= 0 then return {"RATE_LIMITED", rate_start + rate_per, ctx.now} end
end

local have = {}
for _, label in ipairs(worker_labels) do have[label] = true end

-- The head (lowest priority, then oldest) of every label set the worker satisfies.
local heads = {}
local sets = redis.call("HGETALL", P .. "labelsets")
for i = 1, #sets, 2 do
  local ok = true
  for _, label in ipairs(cjson.decode(sets[i + 1])) do
    if not have[label] then ok = false break end
  end
  if ok then heads[#heads + 1] = {key = P .. "ready:" .. sets[i], lsid = sets[i]} end
end

-- head.skip: members at the front of the set this worker already verified (left in place).
local function refresh(head)
  local top = redis.call("ZRANGE", head.key, head.skip, head.skip, "WITHSCORES")
  if top[1] then
    head.member, head.score = top[1], tonumber(top[2])
  else
    head.member = nil
    if head.skip == 0 then redis.call("HDEL", P .. "labelsets", head.lsid) end
  end
end
for _, head in ipairs(heads) do head.skip = 0 refresh(head) end

local reply = {"OK"}
local n, skips = 0, 0
while n < wanted do
  local best = nil
  for _, head in ipairs(heads) do
    if head.member and (best == nil or head.score < best.score
        or (head.score == best.score and head.member < best.member)) then
      best = head
    end
  end
  if best == nil then break end
  local id = string.sub(best.member, 18)
  local job_key = P .. "job:" .. id
  local f = redis.call("HMGET", job_key, "lease_ttl_ms", "timeout_ms", "attempt", "workflow_id",
    "vby:" .. worker_id)
  if f[5] then
    -- A worker never verifies a job twice: look past it, within VERIFY_SKIP_WINDOW per claim.
    skips = skips + 1
    best.skip = best.skip + 1
    if skips > VERIFY_SKIP_WINDOW then break end
    refresh(best)
  else
    n = n + 1
    local ttl = tonumber(lease_ttl_arg) or tonumber(f[1]) or default_ttl
    local expires = ctx.now + ttl
    local timeout_at = 0
    if (tonumber(f[2]) or 0) > 0 then timeout_at = ctx.now + tonumber(f[2]) end
    local deadline = expires
    if timeout_at > 0 and timeout_at < deadline then deadline = timeout_at end
    local lease_id = id .. "." .. ARGV[7 + n]
    redis.call("ZADD", P .. "leases", deadline, id)
    note_due(ctx, "leases", id, deadline)
    redis.call("ZREM", best.key, best.member)
    redis.call("HSET", job_key, "status", "running", "lease_id", lease_id, "worker_id", worker_id,
      "lease_state", "active", "lease_ttl_cur_ms", ttl, "lease_granted_at_ms", ctx.now,
      "lease_expires_at_ms", deadline, "started_at_ms", ctx.now, "timeout_at_ms", timeout_at,
      "progress", "", "progress_message", "")
    redis.call("HDEL", job_key, "waiting_deps")
    redis.call("HINCRBY", P .. "stats", "claimed", 1)
    emit(ctx, id, "queued", "running", f[3], lease_id, f[4])
    reply[#reply + 1] = with_upstream(P, job_key, redis.call("HGETALL", job_key))
    refresh(best)
  end
end

local claimed = #reply - 1
if claimed > 0 then
  if rate_limit > 0 then
    rate_take(KEYS[7], rate_start, rate_used, claimed, rate_per)
  end
  announce(ctx)
  return reply
end
local next_due = redis.call("ZRANGE", P .. "delayed", 0, 0, "WITHSCORES")
return {"EMPTY", next_due[2] or "", ctx.now}
