-- backoff: consumes one attempt of a running job; it waits its backoff, or fails for good when exhausted.
-- Keys built here: P meta (seq), P stats.

local function backoff_ms(kind, base, cap, retry_number)
  if kind == "fixed" then return base end
  if kind == "exponential" then return math.min(base * 2 ^ (retry_number - 1), cap) end
  return 0
end

-- Returns {"RETRY", due_ms} or {"FAILED"}. `rand` in [0,1) drives the jitter.
local function retry_or_fail(ctx, job_key, id, error_text, rand)
  local f = redis.call("HMGET", job_key, "attempt", "max_retries", "backoff_kind",
    "backoff_base_ms", "backoff_max_ms", "jitter", "lease_id", "workflow_id")
  local attempt = tonumber(f[1]) or 0
  if attempt >= (tonumber(f[2]) or 0) then
    redis.call("HSET", job_key, "error", error_text)
    finish(ctx, job_key, id, "failure", "running")
    return {"FAILED"}
  end
  local retry_number = attempt + 1
  local delay = backoff_ms(f[3], tonumber(f[4]) or 0, tonumber(f[5]) or 0, retry_number)
  local jitter = tonumber(f[6]) or 0
  if jitter > 0 and delay > 0 then delay = math.floor(delay * (1 - jitter * rand)) end
  local due = ctx.now + delay
  redis.call("HSET", job_key, "status", "queued", "attempt", retry_number, "error", error_text,
    "delayed_until_ms", delay > 0 and due or 0)
  if delay > 0 then
    local seq = redis.call("HINCRBY", ctx.P .. "meta", "seq", 1)
    redis.call("HSET", job_key, "seq", seq)
    place_delayed(ctx, id, due)
  else
    place_ready(ctx, job_key, id, true)
  end
  redis.call("HINCRBY", ctx.P .. "stats", "retried", 1)
  emit(ctx, id, "running", "queued", retry_number, f[7], f[8])
  return {"RETRY", due}
end
