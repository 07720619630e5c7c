-- finish: the one way a job enters a terminal status (retention, dedup window, counters, event),
-- and the workflow cascade that follows it.
-- Keys built here: P job:<id> (PEXPIRE backstop), P done, P log:<id>, P unique:<key> (expires
-- unique_ttl after the job ends), P stats, P wf:<id>, P wfrun:<run>, P wfruns:<id>,
-- P webhooks (a webhook job's delivery, due now).

local finish

-- Records the end of a workflow job in its run; when the run's last job ends, so does the run,
-- which is then kept as long as the results of the job that ended it (the run history and run
-- counter too, until a later run starts and keeps them).
local function end_in_run(ctx, run_key, workflow_id, status, job_key)
  if status ~= "success" then redis.call("HSETNX", run_key, "first_failure", status) end
  if redis.call("HINCRBY", run_key, "pending", -1) > 0 then return end
  local r = redis.call("HMGET", run_key, "cancel_requested", "first_failure")
  local final = "success"
  if r[1] == "1" then final = "cancelled" elseif r[2] then final = "failure" end
  redis.call("HSET", run_key, "status", final, "finished_at_ms", ctx.now)
  local wf_key = ctx.P .. "wf:" .. workflow_id
  if redis.call("HGET", wf_key, "active_run") == redis.call("HGET", run_key, "run_id") then
    redis.call("HDEL", wf_key, "active_run")
  end
  local keep = (tonumber(redis.call("HGET", job_key, "result_ttl_ms")) or 604800000) + 3600000
  redis.call("PEXPIRE", run_key, keep)
  redis.call("PEXPIRE", wf_key, keep)
  redis.call("PEXPIRE", ctx.P .. "wfruns:" .. workflow_id, keep)
end

-- A dependant whose dependencies all succeeded becomes ready. Its upstream outputs are not
-- copied: its claim reads them from the dependencies (lib/upstream.lua).
local function release_dependant(ctx, dep_key, dep_id)
  if redis.call("HINCRBY", dep_key, "deps_left", -1) > 0 then return end
  if redis.call("HGET", dep_key, "status") ~= "queued" then return end
  leave_waiting(ctx, dep_key)
  place_ready(ctx, dep_key, dep_id, false)
end

local function cascade(ctx, job_key, status)
  local f = redis.call("HMGET", job_key, "run_id", "dependants", "workflow_id", "job_id")
  if not f[1] or f[1] == "" then return end
  end_in_run(ctx, ctx.P .. "wfrun:" .. f[1], f[3], status, job_key)
  if ctx.no_cascade then return end
  for _, dep_id in ipairs(cjson.decode(f[2] or "[]")) do
    local dep_key = ctx.P .. "job:" .. dep_id
    if status == "success" then
      release_dependant(ctx, dep_key, dep_id)
    elseif redis.call("HGET", dep_key, "status") == "queued" then
      redis.call("HSET", dep_key, "error", "upstream job " .. f[4] .. " ended " .. status)
      leave_waiting(ctx, dep_key)
      finish(ctx, dep_key, dep_id, "skipped", "queued")
    end
  end
end

finish = function(ctx, job_key, id, status, from)
  local f = redis.call("HMGET", job_key, "result_ttl_ms", "unique_key", "unique_ttl_ms",
    "attempt", "lease_id", "workflow_id", "webhook_url")
  local ttl = tonumber(f[1]) or 604800000
  redis.call("HSET", job_key, "status", status, "finished_at_ms", ctx.now)
  redis.call("HDEL", job_key, "last_reply")  -- an ended job replays from its own lease fields
  redis.call("ZADD", ctx.P .. "done", ctx.now + ttl, id)
  note_due(ctx, "done", id, ctx.now + ttl)
  -- The reaper purges at now + ttl; these expiries are the backstop when no reaper runs.
  redis.call("PEXPIRE", job_key, ttl + 3600000)
  -- The end marker lets live log viewers stop exactly after the last chunk; a job that never
  -- logged gets no stream (its viewers learn the end from the event below).
  if redis.call("EXISTS", ctx.P .. "log:" .. id) == 1 then
    redis.call("XADD", ctx.P .. "log:" .. id, "*", "end", status)
    redis.call("PEXPIRE", ctx.P .. "log:" .. id, ttl + 3600000)
  end
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
  if f[7] and f[7] ~= "" then redis.call("ZADD", ctx.P .. "webhooks", ctx.now, id) end
  cascade(ctx, job_key, status)
end
