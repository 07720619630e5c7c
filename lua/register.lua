--[[
  register: create or take over a worker record and issue its token, consuming a registration token.

  KEYS[1]  worker      HASH   the worker record ({<ns>}:worker:<id>)
  KEYS[2]  workers     ZSET   member = worker id, score = registration time (ms)
  KEYS[3]  names       HASH   field = worker name, value = worker id
  KEYS[4]  token       HASH   the new worker token's record ({<ns>}:token:<sha256>)
  KEYS[5]  regtoken    HASH   the registration token used ({<ns>}:regtoken:<sha256>); ignored
                              when ARGV[2] = "0"

  ARGV[1]  now_ms        integer, or "" for Redis TIME
  ARGV[2]  use_regtoken  "1" to require and consume KEYS[5]; "0" when an admin registers
  ARGV[3]  worker_id     string
  ARGV[4]  name          string
  ARGV[5]  labels        string, JSON array
  ARGV[6]  version       string
  ARGV[7]  metadata      string, JSON object
  ARGV[8]  offline_ms    integer, a worker silent this long is no longer live
  ARGV[9]  token_digest  string, sha256 hex of the new worker token
  ARGV[10] replace_live  "1": the id may belong to a live worker (it is restarting), which is
                         replaced; "0": a live holder of the id is WORKER_CONFLICT

  Returns  {"OK", registered_at_ms, replaced (1 when the id belonged to a worker, offline or
           replaced while live, whose leases the caller then releases)}
           {"REGTOKEN_INVALID"}    unknown, expired or used up registration token
           {"WORKER_CONFLICT"}     the id belongs to another live worker
           {"NAME_CONFLICT"}       the name belongs to another live worker
  Errors   error "BAD_ARG <name>" for malformed ARGV, before any write
  Writes   HSET worker; ZADD workers; HSET names; HSET token; DEL old token; HINCRBY/DEL regtoken;
           the registration token's `queues` (the queues it limits its workers to) is copied to
           the worker record and its token
  Derived  <token prefix><digest>  HASH  the worker's previous token, deleted
           <worker prefix><id>     HASH  the worker holding the name, read only
  Bounds   the worker record, its name and its token live until revoked or until the reaper's
           worker sweep forgets the worker (LEASEHOLD_WORKER_RETENTION_SECS after its last sign
           of life); a registration token expires at its TTL
  Cost     O(1)
]]
-- @include base

local now = clock(ARGV[1])
local use_regtoken = ARGV[2] == "1"
local worker_id, name = ARGV[3], ARGV[4]
local offline_ms = num(ARGV[8], "offline_ms")
local token_digest = ARGV[9]
local token_prefix = string.sub(KEYS[4], 1, #KEYS[4] - #token_digest)

local function live(worker_key)
  local f = redis.call("HMGET", worker_key, "status", "last_heartbeat_ms")
  return f[1] and f[1] ~= "offline" and now - (tonumber(f[2]) or 0) < offline_ms
end

if use_regtoken and (tonumber(redis.call("HGET", KEYS[5], "uses_left")) or 0) < 1 then
  return {"REGTOKEN_INVALID"}
end
if ARGV[10] ~= "1" and live(KEYS[1]) then return {"WORKER_CONFLICT"} end
local name_holder = redis.call("HGET", KEYS[3], name)
if name_holder and name_holder ~= worker_id then
  local holder_key = string.sub(KEYS[1], 1, #KEYS[1] - #worker_id) .. name_holder
  if live(holder_key) then return {"NAME_CONFLICT"} end
end

local queues = ""
if use_regtoken then
  queues = redis.call("HGET", KEYS[5], "queues") or ""
  if redis.call("HINCRBY", KEYS[5], "uses_left", -1) <= 0 then redis.call("DEL", KEYS[5]) end
end
local replaced = redis.call("EXISTS", KEYS[1])
local old = redis.call("HGET", KEYS[1], "token_digest")
if old then redis.call("DEL", token_prefix .. old) end
local old_name = redis.call("HGET", KEYS[1], "name")
if old_name and old_name ~= name and redis.call("HGET", KEYS[3], old_name) == worker_id then
  redis.call("HDEL", KEYS[3], old_name)
end
-- A live worker replacing its own registration keeps an operator's drain.
local drain = "0"
if ARGV[10] == "1" and redis.call("HGET", KEYS[1], "drain") == "1" then drain = "1" end
local status = "online"
if drain == "1" then status = "draining" end
redis.call("DEL", KEYS[1])
redis.call("HSET", KEYS[1], "worker_id", worker_id, "name", name, "labels", ARGV[5],
  "version", ARGV[6], "metadata", ARGV[7], "status", status, "drain", drain,
  "registered_at_ms", now, "last_heartbeat_ms", now, "running_jobs", 0,
  "resource_usage", "{}", "token_digest", token_digest)
redis.call("ZADD", KEYS[2], now, worker_id)
redis.call("HSET", KEYS[3], name, worker_id)
redis.call("HSET", KEYS[4], "kind", "worker", "role", "worker", "worker_id", worker_id,
  "id", worker_id, "name", name, "created_at_ms", now)
if queues ~= "" then
  redis.call("HSET", KEYS[1], "queues", queues)
  redis.call("HSET", KEYS[4], "queues", queues)
end
return {"OK", now, replaced}
