--[[
  worker_heartbeat: mark a worker alive and record what it reports; tell it whether to drain.

  KEYS[1]  worker   HASH   the worker record

  ARGV[1]  now_ms          integer, or "" for Redis TIME
  ARGV[2]  version         string, "" to keep
  ARGV[3]  running_jobs    integer, "" to keep
  ARGV[4]  resource_usage  string, JSON object, "" to keep

  Returns  {"OK", drain (0|1)} | {"NOT_FOUND"}
  Errors   error "BAD_ARG <name>" for malformed ARGV, before any write
  Writes   HSET worker last_heartbeat_ms, status, version, running_jobs, resource_usage
  Derived  none (only KEYS)
  Bounds   creates no key (writes only an existing worker record)
  Cost     O(1)
]]
-- @include base

local now = clock(ARGV[1])
if ARGV[3] ~= "" then num(ARGV[3], "running_jobs") end
local drain = redis.call("HGET", KEYS[1], "drain")
if not drain then return {"NOT_FOUND"} end
local status = "online"
if drain == "1" then status = "draining" end
redis.call("HSET", KEYS[1], "last_heartbeat_ms", now, "status", status)
if ARGV[2] ~= "" then redis.call("HSET", KEYS[1], "version", ARGV[2]) end
if ARGV[3] ~= "" then redis.call("HSET", KEYS[1], "running_jobs", ARGV[3]) end
if ARGV[4] ~= "" then redis.call("HSET", KEYS[1], "resource_usage", ARGV[4]) end
return {"OK", tonumber(drain)}
