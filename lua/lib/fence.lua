-- fence: decides whether a lease-bound call may act, from the job's current lease and its state.
-- Keys built here: none (it reads the job key it is given).

-- Returns "OK" or the status naming why the lease cannot act.
local function fence(ctx, job_key, lease_id, worker_id)
  local f = redis.call("HMGET", job_key, "status", "lease_id", "worker_id", "lease_state",
    "lease_expires_at_ms")
  if not f[1] then return "LEASE_NOT_FOUND" end
  if f[2] ~= lease_id then
    if f[2] then return "LEASE_SUPERSEDED" end
    return "LEASE_NOT_FOUND"
  end
  if worker_id ~= "" and f[3] ~= worker_id then return "NOT_OWNER" end
  local state = f[4]
  if state == "active" then
    if ctx.now >= tonumber(f[5]) then return "LEASE_EXPIRED" end
    return "OK"
  elseif state == "expired" then
    return "LEASE_EXPIRED"
  elseif state == "cancelled" then
    return "JOB_CANCELLED"
  elseif state == "released" then
    return "LEASE_RELEASED"
  end
  return "JOB_FINISHED"
end
