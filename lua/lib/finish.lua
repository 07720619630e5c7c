-- finish: the one way a job enters a terminal status (retention, dedup window, counters, event).

local function finish(ctx, job_key, id, status, from)
  local f = redis.call("HMGET", job_key, "result_ttl_ms", "unique_key", "unique_ttl_ms",
    "attempt", "lease_id", "workflow_id")
  local ttl = tonumber(f[1]) or 604800000
  redis.call("HSET", job_key, "status", status, "finished_at_ms", ctx.now)
  redis.call("ZADD", ctx.P .. "done", ctx.now + ttl, id)
  -- The reaper purges at now + ttl; these expiries are the backstop when no reaper runs.
  redis.call("PEXPIRE", job_key, ttl + 3600000)
  -- The end marker lets live log viewers stop exactly after the last chunk.
  redis.call("XADD", ctx.P .. "log:" .. id, "*", "end", status)
  redis.call("PEXPIRE", ctx.P .. "log:" .. id, ttl + 3600000)
  if f[2] and f[2] ~= "" then
    local unique_key = ctx.P .. "unique:" .. f[2]
    if redis.call("GET", unique_key) == id then
      local unique_ttl = tonumber(f[3]) or 0
      if unique_ttl > 0 then
        redis.call("PEXPIRE", unique_key, unique_ttl)
      else
        redis.call("DEL", unique_key)
      end
    end
  end
  redis.call("HINCRBY", ctx.P .. "stats", "finished:" .. status, 1)
  redis.call("HINCRBY", ctx.P .. "stats", "count:" .. status, 1)
  emit(ctx, id, from, status, f[4], f[5], f[6])
end
