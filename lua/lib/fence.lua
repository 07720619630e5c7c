-- fence: decides whether a lease-bound call may act, from the job's current lease and its state.
-- Keys built here: none (it reads and writes only the job key it is given).

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

-- A finishing call (complete, fail, release) remembers its reply on the job record, in the
-- field last_reply = "verb|lease id|worker id|r1|r2|r3", so that the same call retried by the
-- same lease (its reply was lost to a crash or a network cut) gets that reply again instead of
-- 409. One reply per job: the next finishing call replaces it; it expires with the job record.
local function remember_reply(job_key, verb, lease_id, r1, r2, r3)
  local holder = redis.call("HGET", job_key, "worker_id") or ""
  redis.call("HSET", job_key, "last_reply",
    table.concat({verb, lease_id, holder, r1 or "", r2 or "", r3 or ""}, "|"))
end

-- The remembered reply {"REPLAYED", r1, r2, r3} when `verb` by `lease_id` (owned by
-- `worker_id`, "" = any) is what last finished the job; nil otherwise.
local function replay(job_key, verb, lease_id, worker_id)
  local s = redis.call("HGET", job_key, "last_reply")
  if not s then return nil end
  local v, lease, holder, r1, r2, r3 =
    string.match(s, "^([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)$")
  if v ~= verb or lease ~= lease_id then return nil end
  if worker_id ~= "" and holder ~= worker_id then return nil end
  return {"REPLAYED", r1, r2, r3}
end
