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
-- @include claim

local ctx = {P = prefix_of(KEYS[1]), now = clock(ARGV[1]), maxlen = num(ARGV[2], "events_maxlen")}
local lease_ttl_arg = ARGV[5]
if lease_ttl_arg ~= "" then num(lease_ttl_arg, "lease_ttl_ms") end
local tokens = {}
for i = 8, #ARGV do tokens[#tokens + 1] = ARGV[i] end
return claim_jobs(ctx, {worker_id = ARGV[3], worker_labels = cjson.decode(ARGV[4]),
  lease_ttl_arg = lease_ttl_arg, promote_batch = num(ARGV[6], "promote_batch"),
  default_ttl = num(ARGV[7], "default_ttl_ms"), rate_key = KEYS[7], tokens = tokens})
