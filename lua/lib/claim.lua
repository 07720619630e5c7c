-- claim: lease up to `wanted` of the best ready jobs of a queue whose required labels the
-- worker has (the body of claim.lua, shared by the scripts that finish a lease and claim again).
-- Keys built here: P meta, P labelsets, P leases, P stats, P delayed, P ready:<lsid>,
-- P job:<id> (see claim.lua's header for their bounds). Needs base, upstream and rate.

-- args: worker_id, worker_labels (decoded), lease_ttl_arg ("" or ms), promote_batch,
-- default_ttl, rate_key, tokens (one lease token per job wanted). Returns claim.lua's reply.
local function claim_jobs(ctx, args)
  local P = ctx.P
  local worker_id = args.worker_id
  local worker_labels = args.worker_labels
  local lease_ttl_arg = args.lease_ttl_arg
  local promote_batch = args.promote_batch
  local default_ttl = args.default_ttl
  local tokens = args.tokens
  local wanted = #tokens
  local VERIFY_SKIP_WINDOW = 64

  promote(ctx, promote_batch)

  local meta = redis.call("HMGET", P .. "meta", "paused", "max_running", "rate_limit",
    "rate_per_ms")
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
    rate_start, rate_used = rate_window(args.rate_key, ctx.now, rate_per)
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
      local lease_id = id .. "." .. tokens[n]
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
      rate_take(args.rate_key, rate_start, rate_used, claimed, rate_per)
    end
    announce(ctx)
    return reply
  end
  local next_due = redis.call("ZRANGE", P .. "delayed", 0, 0, "WITHSCORES")
  return {"EMPTY", next_due[2] or "", ctx.now}
end
