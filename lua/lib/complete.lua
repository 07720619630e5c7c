-- complete: finish a lease with success (fenced; a quorum job records its vote instead), shared
-- by complete.lua and complete_claim.lua. Needs lib/finish, lib/fence and lib/quorum.
-- Keys built here: P job:<id>.

-- {"OK", run_ms} | {"OK", run_ms, "voted" | "no_quorum"} | {"REPLAYED", ...} | {verdict}
local function complete_lease(ctx, leases_key, job_id, lease_id, worker_id, outputs, verification)
  local job_key = ctx.P .. "job:" .. job_id
  local verdict = fence(ctx, job_key, lease_id, worker_id)
  if verdict ~= "OK" then
    return replay(job_key, "complete", lease_id, worker_id) or {verdict}
  end
  local run_ms = ctx.now - (tonumber(redis.call("HGET", job_key, "started_at_ms")) or ctx.now)
  local vote = quorum_vote(ctx, job_key, job_id, verification)
  if vote then return {"OK", run_ms, vote} end
  redis.call("HSET", job_key, "outputs", outputs, "lease_state", "completed", "progress", 100)
  finish(ctx, job_key, job_id, "success", "running")
  redis.call("ZREM", leases_key, job_id)
  -- dependants that became ready wake waiting claims like any submit
  wake(ctx)
  return {"OK", run_ms}
end
