-- quorum: verification by several workers. A job with `verify_count` N > 0 succeeds once N
-- completions from distinct workers report the same verification value; until then each
-- completion records its vote and sends the job back to ready (no attempt consumed) for a
-- worker that has not voted on it (claim skips jobs carrying `vby:<worker>`).
-- Keys built here: P job:<id> fields `vby:<worker id>` (one per voting worker) and
-- `vote:<value>` (one per distinct value), bounded by `verify_max_votes` (the job fails with
-- `no_quorum` when that many votes found no quorum) and deleted with the job; P events; P stats;
-- P leases (the job leaves it).

-- Records one vote of the lease's worker (needs lib/finish). Returns nil when the job needs no
-- quorum or this vote reached it (the caller finishes the job with success); else "voted" (the
-- job went back to ready) or "no_quorum" (the job used up its votes and failed).
local function quorum_vote(ctx, job_key, job_id, value)
  local f = redis.call("HMGET", job_key, "verify_count", "verify_max_votes", "worker_id",
    "verify_votes", "attempt", "lease_id", "workflow_id", "lsid")
  local need = tonumber(f[1]) or 0
  if need <= 0 then return nil end
  local voter = f[3] or ""
  redis.call("HSET", job_key, "vby:" .. voter, value)
  local votes = redis.call("HINCRBY", job_key, "vote:" .. value, 1)
  local total = redis.call("HINCRBY", job_key, "verify_votes", 1)
  redis.call("HINCRBY", ctx.P .. "stats", "verify_votes", 1)
  if votes >= need then
    redis.call("HSET", job_key, "verification", value)
    redis.call("HINCRBY", ctx.P .. "stats", "verify_quorum", 1)
    return nil
  end
  if total >= (tonumber(f[2]) or need) then
    redis.call("HINCRBY", ctx.P .. "stats", "verify_no_quorum", 1)
    redis.call("HSET", job_key, "lease_state", "failed",
      "error", "no " .. need .. " of " .. total .. " verifications agreed")
    finish(ctx, job_key, job_id, "failure", "running")
    redis.call("ZREM", ctx.P .. "leases", job_id)
    announce(ctx)
    return "no_quorum"
  end
  redis.call("HSET", job_key, "status", "queued", "lease_state", "released")
  place_ready(ctx, job_key, job_id, false)
  redis.call("ZREM", ctx.P .. "leases", job_id)
  redis.call("HINCRBY", ctx.P .. "stats", "verify_requeued", 1)
  redis.call("XADD", ctx.P .. "events", "MAXLEN", "~", ctx.maxlen, "*",
    "job", job_id, "from", "running", "to", "queued", "attempt", f[5] or 0,
    "lease", f[6] or "", "workflow", f[7] or "", "t", ctx.now,
    "verification", votes .. "/" .. need)
  wake(ctx)
  return "voted"
end
