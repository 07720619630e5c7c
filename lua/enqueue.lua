--[[
  enqueue: store one or many new jobs atomically, placing each as ready, delayed or waiting.

  KEYS[1]  meta       HASH   queue settings and the "seq" counter
  KEYS[2]  labelsets  HASH   field = label-set id, value = JSON array of labels
  KEYS[3]  delayed    ZSET   member = job id, score = due time (ms)
  KEYS[4]  index      ZSET   member = job id, score = enqueue sequence (listing order)
  KEYS[5]  stats      HASH   lifecycle counters
  KEYS[6]  events     STREAM state transitions

  ARGV[1]  now_ms        integer, or "" for Redis TIME
  ARGV[2]  events_maxlen integer > 0
  ARGV[3]  count         integer 1..1000, the number of jobs that follow
  ARGV[4]  workflow_id   string, "" unless the jobs are one run of a workflow
  ARGV[5]  run_id        string, "" unless a workflow run; refused while another run is active
  ARGV[6]  run_jobs      string, JSON object {job name: job id} of the run ("" without a run)
  ARGV[7]  schedule      string, "<schedule id> <occurrence ms>" when a schedule's occurrence is
                         enqueued ("" otherwise): refused unless later than the last one
  then per job, in order:
           id            string, the job id (unique; refused if it exists)
           lsid          string, id of the job's required-label set
           labels        string, JSON array of the required labels
           priority      integer 0..1000
           run_at_ms     integer, absolute earliest claim time (0 = none)
           delay_ms      integer, earliest claim time relative to now (0 = none); the later wins
           unique_key    string, "" = no dedup
           placement     "ready" or "waiting" (waits on workflow dependencies)
           nfields       integer, then nfields (field, value) pairs stored verbatim

  Returns  {"OK", now_ms, id_1, dedup_1, id_2, dedup_2, ...}  dedup = 1 when unique_key matched a
           live job, whose id is returned instead
           {"RATE_LIMITED", retry_at_ms, now_ms}  the queue's submit_rate has no room for
           every job of the call (none is stored)
           {"SCHEDULE_DONE", last_ms}  the schedule's occurrence was enqueued already
  Errors   {"ID_EXISTS", id} | {"RUN_ACTIVE", run_id} before any write;
           error "BAD_ARG <name>" for malformed ARGV
  Writes   HSET job:<id>; ZADD ready:<lsid> or delayed; ZADD index; SET unique:<key>; stats; events;
           with a run: HSET wfrun:<run_id>, ZADD wfruns:<workflow_id> (score = the workflow's
           run number, so runs started in one millisecond keep their order), HSET wf:<workflow_id>
  Derived  P index         ZSET   listing order
           P job:<id>      HASH   the job record (id from ARGV or a set member)
           P meta          HASH   (also KEYS[1])
           P stats         HASH   lifecycle counters
           P unique:<key>  STRING job id holding a unique_key
           P wf:<id>       HASH   active_run and run counter of a workflow
           P submit_rate   STRING "<window start ms>:<submits>" of the submit_rate window
           P sched:<id>    STRING the last occurrence (ms) of a schedule enqueued here
           P wfrun:<run>   HASH   one workflow run
           P wfruns:<id>   ZSET   run ids of a workflow
  Bounds   P job:<id>: deleted at its purge time, result TTL after it ends (PEXPIRE backstop)
           P ready:<lsid>: one member per ready job; gone when empty, with its labelsets entry
           labelsets: only label sets with ready jobs
           delayed: one member per delayed job
           index: one member per job until it is purged
           P unique:<key>: expires unique_ttl after its job ends
           P submit_rate: expires at the end of its window
           P sched:<id>: one per schedule; deleted with the schedule
           stats: one counter per kind and status; deleted with an idle empty queue
           events: MAXLEN ~ events_maxlen; deleted with an idle empty queue
           meta: fixed fields; deleted when an idle empty queue is forgotten (forget_queue)
           P wf:<id>, P wfrun:<run>, P wfruns:<id>: per workflow and run (run retention)
  Cost     O(count * (fields + log N))
]]
-- @include base
-- @include rate

local P = prefix_of(KEYS[1])
local ctx = {P = P, now = clock(ARGV[1]), maxlen = num(ARGV[2], "events_maxlen")}
local count = num(ARGV[3], "count")
local workflow_id, run_id, run_jobs = ARGV[4], ARGV[5], ARGV[6]

local schedule = ARGV[7]
local jobs = {}
local pos = 8
for i = 1, count do
  local job = {id = ARGV[pos], lsid = ARGV[pos + 1], labels = ARGV[pos + 2],
    priority = num(ARGV[pos + 3], "priority"),
    run_at = math.max(num(ARGV[pos + 4], "run_at_ms"), ctx.now + num(ARGV[pos + 5], "delay_ms")),
    unique_key = ARGV[pos + 6], placement = ARGV[pos + 7]}
  local nfields = num(ARGV[pos + 8], "nfields")
  job.fields = {}
  for j = 1, nfields * 2 do job.fields[j] = ARGV[pos + 8 + j] end
  pos = pos + 9 + nfields * 2
  if job.placement ~= "ready" and job.placement ~= "waiting" then error("BAD_ARG placement") end
  if redis.call("EXISTS", P .. "job:" .. job.id) == 1 then return {"ID_EXISTS", job.id} end
  jobs[i] = job
end

if run_id ~= "" then
  local active = redis.call("HGET", P .. "wf:" .. workflow_id, "active_run")
  if active then return {"RUN_ACTIVE", active} end
end
local sched_key, occurrence = nil, nil
if schedule ~= "" then
  local sched_id, at = string.match(schedule, "^(%S+) (%d+)$")
  if not sched_id then error("BAD_ARG schedule") end
  sched_key, occurrence = P .. "sched:" .. sched_id, tonumber(at)
  local last = tonumber(redis.call("GET", sched_key)) or -1
  if occurrence <= last then return {"SCHEDULE_DONE", last} end
end
local limits = redis.call("HMGET", P .. "meta", "submit_limit", "submit_per_ms")
local submit_limit = tonumber(limits[1]) or 0
local submit_per = math.max(tonumber(limits[2]) or 1000, 1)
local submit_start, submit_used = 0, 0
if submit_limit > 0 then
  submit_start, submit_used = rate_window(P .. "submit_rate", ctx.now, submit_per)
  if submit_used + count > submit_limit then
    redis.call("HINCRBY", P .. "stats", "submit_rate_limited", count)
    return {"RATE_LIMITED", submit_start + submit_per, ctx.now}
  end
end
if sched_key then redis.call("SET", sched_key, occurrence) end
if submit_limit > 0 then
  rate_take(P .. "submit_rate", submit_start, submit_used, count, submit_per)
end

if run_id ~= "" then
  redis.call("HSET", P .. "wf:" .. workflow_id, "active_run", run_id)
  redis.call("HSET", P .. "wfrun:" .. run_id, "run_id", run_id, "workflow_id", workflow_id,
    "status", "running", "started_at_ms", ctx.now, "pending", count, "jobs", run_jobs)
  local run_number = redis.call("HINCRBY", P .. "wf:" .. workflow_id, "runs", 1)
  redis.call("ZADD", P .. "wfruns:" .. workflow_id, run_number, run_id)
end

local reply = {"OK", ctx.now}
for _, job in ipairs(jobs) do
  local existing = false
  local unique_key = P .. "unique:" .. job.unique_key
  if job.unique_key ~= "" then
    existing = redis.call("GET", unique_key)
    if existing and redis.call("EXISTS", P .. "job:" .. existing) == 0 then existing = false end
  end
  if existing then
    reply[#reply + 1] = existing
    reply[#reply + 1] = 1
  else
    local job_key = P .. "job:" .. job.id
    local seq = redis.call("HINCRBY", P .. "meta", "seq", 1)
    redis.call("HSET", job_key, unpack(job.fields))
    redis.call("HSET", job_key, "id", job.id, "lsid", job.lsid, "labels", job.labels,
      "priority", job.priority, "unique_key", job.unique_key, "status", "queued", "attempt", 0,
      "seq", seq, "enqueued_at_ms", ctx.now, "delayed_until_ms", 0)
    if job.placement == "waiting" then
      redis.call("HSET", job_key, "waiting_deps", 1)
      redis.call("HINCRBY", P .. "stats", "count:waiting", 1)
    elseif job.run_at > ctx.now then
      redis.call("HSET", job_key, "delayed_until_ms", job.run_at)
      place_delayed(ctx, job.id, job.run_at)
    else
      place_ready(ctx, job_key, job.id, false)
    end
    redis.call("ZADD", P .. "index", seq, job.id)
    if job.unique_key ~= "" then redis.call("SET", unique_key, job.id) end
    redis.call("HINCRBY", P .. "stats", "submitted", 1)
    emit(ctx, job.id, "", "queued", 0, "", redis.call("HGET", job_key, "workflow_id"))
    reply[#reply + 1] = job.id
    reply[#reply + 1] = 0
  end
end
wake(ctx)
return reply
