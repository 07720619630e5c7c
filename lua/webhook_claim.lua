--[[
  webhook_claim: take the queue's due webhook deliveries for one delivery attempt each, hiding
  them from other deliverers until their visibility timeout passes.

  KEYS[1]  meta       HASH   (prefix of the job keys)
  KEYS[2]  webhooks   ZSET   member = job id, score = when its next delivery attempt is due (ms)

  ARGV[1]  now_ms         integer, or "" for Redis TIME
  ARGV[2]  batch          integer > 0, the most deliveries taken
  ARGV[3]  visibility_ms  integer > 0, how long a taken delivery stays hidden (a deliverer that
                          dies mid-attempt leaves it to another after this)

  Returns  {"OK", id, url, headers_json, deliveries_json, ...}   per taken delivery (a job gone
           since, or without a webhook, leaves the set and is not returned)
  Errors   error "BAD_ARG <name>" for malformed ARGV, before any write
  Writes   ZADD webhooks (score = now + visibility_ms) per taken delivery; ZREM of stale ones
  Derived  P job:<id>   HASH   the job record (id from the webhooks set)
  Bounds   webhooks: one member per terminal webhook job until delivered or given up (the
           finishing script adds it; webhook_record removes it)
  Cost     O(batch * log N)
]]
-- @include base

local P = prefix_of(KEYS[1])
local now = clock(ARGV[1])
local batch = num(ARGV[2], "batch")
local visibility = num(ARGV[3], "visibility_ms")

local out = {"OK"}
local due = redis.call("ZRANGEBYSCORE", KEYS[2], "-inf", now, "LIMIT", 0, batch)
for _, id in ipairs(due) do
  local f = redis.call("HMGET", P .. "job:" .. id, "webhook_url", "webhook_headers",
    "webhook_deliveries")
  if not f[1] or f[1] == "" then
    redis.call("ZREM", KEYS[2], id)
  else
    redis.call("ZADD", KEYS[2], now + visibility, id)
    table.insert(out, id)
    table.insert(out, f[1])
    table.insert(out, f[2] or "{}")
    table.insert(out, f[3] or "[]")
  end
end
return out
