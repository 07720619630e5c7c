--[[
  complete: finish the caller's lease with success and store the job's outputs.

  KEYS[1]  meta     HASH   (prefix of the job key)
  KEYS[2]  leases   ZSET   member = job id, score = lease deadline (ms)
  KEYS[3]  done     ZSET   member = job id, score = purge time (ms)
  KEYS[4]  stats    HASH   lifecycle counters
  KEYS[5]  events   STREAM state transitions

  ARGV[1]  now_ms        integer, or "" for Redis TIME
  ARGV[2]  events_maxlen integer > 0
  ARGV[3]  job_id        string
  ARGV[4]  lease_id      string
  ARGV[5]  worker_id     string, "" to skip the ownership check
  ARGV[6]  outputs       string, JSON object
  ARGV[7]  verification  string, the value this completion vouches for (jobs with a quorum)

  Returns  {"OK", run_ms}   run_ms = this attempt's run time by Redis time
           {"OK", run_ms, "voted" | "no_quorum"}   a quorum job short of its quorum went back
           to ready, or failed having used up its votes (lib/quorum.lua)
           {"REPLAYED", "OK", ""}  this lease already completed the job: its reply again
           {"LEASE_NOT_FOUND"} | {"LEASE_SUPERSEDED"} | {"LEASE_EXPIRED"} | {"LEASE_RELEASED"}
           | {"JOB_CANCELLED"} | {"JOB_FINISHED"} | {"NOT_OWNER"}
  Errors   error "BAD_ARG <name>" for malformed ARGV, before any write
  Writes   HSET job:<id> status, outputs, lease_state; ZREM leases; ZADD done; stats; events;
           a quorum vote: HSET job:<id> vby:<worker>, vote:<value>; ZADD ready:<lsid>
  Derived  P job:<id>      HASH   the job record (id from ARGV or a set member)
  Bounds   P job:<id>: deleted at its purge time, result TTL after it ends (PEXPIRE backstop);
           its vote fields: at most verify_max_votes
           done: one member per terminal job until its purge time
           stats: one counter per kind and status; deleted with an idle empty queue
           events: MAXLEN ~ events_maxlen; deleted with an idle empty queue
  Cost     O(log N + dependants)
]]
-- @include base
-- @include finish
-- @include fence
-- @include quorum
-- @include complete

local ctx = {P = prefix_of(KEYS[1]), now = clock(ARGV[1]), maxlen = num(ARGV[2], "events_maxlen")}
return complete_lease(ctx, KEYS[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7] or "")
