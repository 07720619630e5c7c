--[[
  artifact_commit: make an uploaded artifact visible under its name, atomically, within the
  queue's quota; only the job's current lease holder (or an admin) may.

  KEYS[1]  meta     HASH   (prefix of the job and artifact keys)

  ARGV[1]  now_ms        integer, or "" for Redis TIME
  ARGV[2]  job_id        string
  ARGV[3]  name          string, the artifact's name (checked by the caller)
  ARGV[4]  upload        string, the upload id its chunks were stored under
  ARGV[5]  size          integer >= 0, bytes
  ARGV[6]  content_type  string
  ARGV[7]  sha256        string, hex digest of the bytes
  ARGV[8]  worker_id     string, "" for an admin (no lease check)
  ARGV[9]  quota_bytes   integer > 0, cap of the queue's committed artifact bytes
  ARGV[10] max_count     integer > 0, the most artifacts one job may hold
  ARGV[11] chunks        integer >= 0, how many chunks the upload stored

  Returns  {"OK", replaced_upload}   replaced_upload = the upload id of the artifact this one
           replaced under the same name ("" when none); its chunks are deleted here
           {"NOT_FOUND"} the job does not exist
           {"NOT_OWNER"} the caller does not hold the job's active lease
           {"TOO_MANY", count} the job already holds max_count other artifacts
           {"QUOTA", used} the queue's artifacts would pass quota_bytes
           On every refusal the upload's chunks are deleted.
  Errors   error "BAD_ARG <name>" for malformed ARGV, before any write
  Writes   HSET art:<id>; INCRBY artbytes; PERSIST artdata:<upload>; DEL of a replaced or
           refused upload's artdata key
  Derived  P job:<id>          HASH   the job record (id from ARGV)
           P art:<id>          HASH   name -> JSON {name, size, content_type, sha256,
                                      created_at_ms, upload, chunks}
           P artdata:<upload>  HASH   chunk number -> bytes (Redis backend)
           P artbytes          STRING bytes of the queue's committed artifacts
  Bounds   art:<id>: at most max_count names, deleted with the job by the reaper's purge;
           artdata:<upload>: expires an hour after its last chunk until committed here, then
           lives as long as its index entry (replaced or purged deletes it); artbytes: at most
           quota_bytes, deleted when it drops to zero
  Cost     O(1) (plus the chunks of a replaced upload)
]]
-- @include base

local P = prefix_of(KEYS[1])
local now = clock(ARGV[1])
local job_id, name, upload = ARGV[2], ARGV[3], ARGV[4]
local size = num(ARGV[5], "size")
local content_type, sha, worker_id = ARGV[6], ARGV[7], ARGV[8]
local quota = num(ARGV[9], "quota_bytes")
local max_count = num(ARGV[10], "max_count")
local chunks = num(ARGV[11], "chunks")

local job_key = P .. "job:" .. job_id
local index = P .. "art:" .. job_id
local data = P .. "artdata:" .. upload

local function refuse(...)
  redis.call("DEL", data)
  return {...}
end

local f = redis.call("HMGET", job_key, "status", "worker_id", "lease_state")
if not f[1] then return refuse("NOT_FOUND") end
if worker_id ~= "" and (f[1] ~= "running" or f[2] ~= worker_id or f[3] ~= "active") then
  return refuse("NOT_OWNER")
end
local old = redis.call("HGET", index, name)
local old_size, old_upload = 0, ""
if old then
  local meta = cjson.decode(old)
  old_size, old_upload = tonumber(meta.size) or 0, meta.upload
else
  local count = redis.call("HLEN", index)
  if count >= max_count then return refuse("TOO_MANY", count) end
end
local used = tonumber(redis.call("GET", P .. "artbytes")) or 0
if used - old_size + size > quota then return refuse("QUOTA", used) end

redis.call("HSET", index, name, cjson.encode({name = name, size = size,
  content_type = content_type, sha256 = sha, created_at_ms = now, upload = upload,
  chunks = chunks}))
redis.call("PERSIST", data)
if old_upload ~= "" then redis.call("DEL", P .. "artdata:" .. old_upload) end
if size - old_size ~= 0 then redis.call("INCRBY", P .. "artbytes", size - old_size) end
return {"OK", old_upload}
