-- base: the clock seam, argument checks, events and ready-queue placement shared by every script.
-- Every script that includes this file defines P, the queue's key prefix "{<ns>:<queue>}:",
-- taken from KEYS[1] (the queue's meta key), so derived keys keep the declared hash tag.
-- Keys built here: P job:<id>; P ready:<lsid> (gone when its last job leaves, and its labelsets
-- entry with it, see take_ready); P labelsets (only sets with ready jobs); P delayed; P events
-- (MAXLEN ~); P meta; P stats (fixed fields); P leases, P done (note_due reads their heads).

local function num(value, name)
  local n = tonumber(value)
  if n == nil then error("BAD_ARG " .. name) end
  return n
end

local function clock(value)
  if value ~= nil and value ~= "" then return num(value, "now_ms") end
  local t = redis.call("TIME")
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function prefix_of(meta_key)
  return string.sub(meta_key, 1, #meta_key - 4)
end

-- Appends one state transition to the queue's capped audit stream.
local function emit(ctx, id, from, to, attempt, lease_id, workflow_id)
  redis.call("XADD", ctx.P .. "events", "MAXLEN", "~", ctx.maxlen, "*",
    "job", id, "from", from, "to", to, "attempt", attempt or 0,
    "lease", lease_id or "", "workflow", workflow_id or "", "t", ctx.now)
end

local function ready_member(seq, id)
  return string.format("%016d", tonumber(seq)) .. "|" .. id
end

-- Puts a job in the ready set of its label set; a fresh sequence sends it to the back of its priority.
local function place_ready(ctx, job_key, id, fresh_seq)
  local f = redis.call("HMGET", job_key, "lsid", "labels", "priority", "seq")
  local seq = f[4]
  if fresh_seq then
    seq = redis.call("HINCRBY", ctx.P .. "meta", "seq", 1)
    redis.call("HSET", job_key, "seq", seq)
  end
  redis.call("HSET", ctx.P .. "labelsets", f[1], f[2])
  redis.call("ZADD", ctx.P .. "ready:" .. f[1], tonumber(f[3]), ready_member(seq, id))
  ctx.woken = (ctx.woken or 0) + 1
end

-- Takes one member out of a ready set; a set left empty leaves the label-set index with it, so
-- the index holds only sets with ready jobs (claim reads the whole index).
local function take_ready(ctx, lsid, member)
  local key = ctx.P .. "ready:" .. lsid
  redis.call("ZREM", key, member)
  if redis.call("EXISTS", key) == 0 then redis.call("HDEL", ctx.P .. "labelsets", lsid) end
end

-- Notes that `id` was just written to `set` (leases, delayed, done) with `score`; when it is the
-- set's new head, the queue has a new earliest deadline that the reapers must learn (announce).
local function note_due(ctx, set, id, score)
  if redis.call("ZRANGE", ctx.P .. set, 0, 0)[1] == id then
    if ctx.due == nil or score < ctx.due then ctx.due = score end
  end
end

-- Tells reapers (channel "<prefix>due", message = ms) that the queue has work due that soon.
local function announce(ctx)
  if ctx.due ~= nil then redis.call("PUBLISH", ctx.P .. "due", ctx.due) end
end

-- Puts a job in `delayed` until `due`; long-polling claimers are woken to learn the new due time
-- (a claim that finds nothing sleeps until the earliest due job, so no later wake-up is needed).
local function place_delayed(ctx, id, due)
  redis.call("ZADD", ctx.P .. "delayed", due, id)
  note_due(ctx, "delayed", id, due)
  ctx.woken = (ctx.woken or 0) + 1
end

-- Tells long-polling claimers (channel "<prefix>ready", message = jobs made ready) to look again,
-- and reapers about a new earliest deadline.
local function wake(ctx)
  if (ctx.woken or 0) > 0 then redis.call("PUBLISH", ctx.P .. "ready", ctx.woken) end
  announce(ctx)
end

-- A job waiting on workflow dependencies stops waiting (it becomes ready or terminal).
local function leave_waiting(ctx, job_key)
  if redis.call("HDEL", job_key, "waiting_deps") == 1 then
    redis.call("HINCRBY", ctx.P .. "stats", "count:waiting", -1)
  end
end

-- Removes a queued job from whichever waiting set holds it (ready, delayed, or none while it waits on deps).
local function unplace(ctx, job_key, id)
  leave_waiting(ctx, job_key)
  if redis.call("ZREM", ctx.P .. "delayed", id) == 1 then return end
  local f = redis.call("HMGET", job_key, "lsid", "seq")
  if f[1] and f[2] then take_ready(ctx, f[1], ready_member(f[2], id)) end
end

-- Moves due delayed jobs (retry backoff, run_at) into their ready sets; bounded by `batch`.
local function promote(ctx, batch)
  local due = redis.call("ZRANGEBYSCORE", ctx.P .. "delayed", "-inf", ctx.now, "LIMIT", 0, batch)
  for _, id in ipairs(due) do
    place_ready(ctx, ctx.P .. "job:" .. id, id, false)
    redis.call("ZREM", ctx.P .. "delayed", id)
  end
  return #due
end
