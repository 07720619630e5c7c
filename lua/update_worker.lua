--[[
  update_worker: change a worker's labels, name or metadata (an operator's edit).

  KEYS[1]  worker  HASH   the worker record ({<ns>}:worker:<id>)
  KEYS[2]  names   HASH   field = worker name, value = worker id

  ARGV[1]  now_ms      integer, or "" for Redis TIME
  ARGV[2]  labels      string, JSON array, "" to keep
  ARGV[3]  name        string, "" to keep
  ARGV[4]  metadata    string, JSON object, "" to keep
  ARGV[5]  offline_ms  integer > 0, a worker silent this long is no longer live

  Returns  {"OK"} | {"NOT_FOUND"} | {"NAME_CONFLICT"} (the name belongs to another live worker)
  Errors   error "BAD_ARG <name>" for malformed ARGV, before any write
  Writes   HSET worker labels, name, metadata; HDEL/HSET names
  Derived  none (only KEYS)
  Bounds   creates no key (the name entry moves with the worker and goes when it goes)
  Cost     O(1)
]]
-- @include base

local now = clock(ARGV[1])
local offline_ms = num(ARGV[5], "offline_ms")
local name = ARGV[3]
local f = redis.call("HMGET", KEYS[1], "worker_id", "name")
if not f[1] then return {"NOT_FOUND"} end
local worker_id = f[1]

if name ~= "" and name ~= f[2] then
  local holder = redis.call("HGET", KEYS[2], name)
  if holder and holder ~= worker_id then
    local holder_key = string.sub(KEYS[1], 1, #KEYS[1] - #worker_id) .. holder
    local h = redis.call("HMGET", holder_key, "status", "last_heartbeat_ms")
    if h[1] and h[1] ~= "offline" and now - (tonumber(h[2]) or 0) < offline_ms then
      return {"NAME_CONFLICT"}
    end
  end
  if f[2] and redis.call("HGET", KEYS[2], f[2]) == worker_id then
    redis.call("HDEL", KEYS[2], f[2])
  end
  redis.call("HSET", KEYS[2], name, worker_id)
  redis.call("HSET", KEYS[1], "name", name)
end
if ARGV[2] ~= "" then redis.call("HSET", KEYS[1], "labels", ARGV[2]) end
if ARGV[4] ~= "" then redis.call("HSET", KEYS[1], "metadata", ARGV[4]) end
return {"OK"}
