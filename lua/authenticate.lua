--[[
  authenticate: look up a token's principal and, for a worker, its drain flag, registered labels
  and registration time, in one round trip.

  KEYS[1]  token   HASH   {<ns>}:token:<sha256 of the presented token>

  ARGV[1]  worker_prefix  string, "{<ns>}:worker:" (same hash tag as KEYS[1])

  Returns  {"OK", kind, role, id, name, worker_id, drain (0|1), labels (JSON array, "" for
           non-workers), registered_at_ms ("" for non-workers), queues (JSON array of the
           queues the token is limited to, "" = every queue)}
           {"NONE"}   no such token (never issued, deleted or revoked)
  Errors   none
  Writes   nothing
  Derived  <ARGV[1]><worker id>  HASH  the token's worker record, read only
  Bounds   creates nothing
  Cost     O(1)
]]

local f = redis.call("HMGET", KEYS[1], "kind", "role", "id", "name", "worker_id", "queues")
if not f[1] then return {"NONE"} end
local drain, labels, registered = 0, "", ""
if f[1] == "worker" then
  local w = redis.call("HMGET", ARGV[1] .. f[5], "drain", "token_digest", "labels",
    "registered_at_ms")
  -- A token whose worker record names another digest belongs to a replaced registration.
  if not w[2] or string.sub(KEYS[1], -#w[2]) ~= w[2] then return {"NONE"} end
  drain = tonumber(w[1]) or 0
  labels = w[3] or "[]"
  registered = w[4] or ""
end
return {"OK", f[1], f[2], f[3] or "", f[4] or "", f[5] or "", drain, labels, registered,
  f[6] or ""}
