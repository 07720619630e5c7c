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

-- Replies survive lost replies: the same finishing call (complete, fail, release) retried by the
-- lease that made it gets its first reply again instead of 409. A job that ended keeps the lease
-- that ended it (lease_id, worker_id, lease_state), which decides a complete's or a terminal
-- fail's replay with nothing more stored. A release or a retried failure leaves the job live
-- (another claim replaces its lease), so it remembers its reply in one short field
-- last_reply = "<call><kind>|<lease token>|<holder fingerprint>|<due ms>": call r|f (release,
-- fail), kind O|R (ok, retry), the lease id's random part and 6 hex digits of the SHA-1 of the
-- holder's id. finish() removes it, so a finished job carries no extra field.
local KIND_NAMES = {O = "OK", R = "RETRY"}

local function lease_token(lease_id)
  return string.match(lease_id, "([^.]*)$") or ""
end

local function fingerprint(worker_id)
  return string.sub(redis.sha1hex(worker_id), 1, 6)
end

-- Called by release ("r", "O") and by a fail that retries ("f", "R", due).
local function remember_reply(job_key, call, kind, lease_id, due)
  local holder = redis.call("HGET", job_key, "worker_id") or ""
  redis.call("HSET", job_key, "last_reply", call .. kind .. "|" .. lease_token(lease_id) .. "|" ..
    fingerprint(holder) .. "|" .. (due or ""))
end

-- {"REPLAYED", kind, due ms} when `call` by `lease_id` (held by `worker_id`, "" = any) is what
-- last finished the job's lease; nil otherwise.
local function replay(job_key, call, lease_id, worker_id)
  local f = redis.call("HMGET", job_key, "lease_id", "worker_id", "lease_state", "status",
    "last_reply")
  if f[1] == lease_id and (worker_id == "" or f[2] == worker_id) then
    if call == "complete" and f[3] == "completed" then return {"REPLAYED", "OK", ""} end
    if call == "fail" and f[3] == "failed" and f[4] == "failure" then
      return {"REPLAYED", "FAILED", ""}
    end
  end
  if not f[5] then return nil end
  local c, k, token, holder, due = string.match(f[5], "^(%a)(%a)|([^|]*)|([^|]*)|([^|]*)$")
  if c ~= string.sub(call, 1, 1) or token ~= lease_token(lease_id) then return nil end
  if worker_id ~= "" and holder ~= fingerprint(worker_id) then return nil end
  return {"REPLAYED", KIND_NAMES[k], due}
end
