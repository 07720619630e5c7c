--[[
  webhook_record: record one webhook delivery attempt on the job, then either forget the
  delivery (delivered, or attempts used up) or schedule the next attempt.

  KEYS[1]  meta       HASH   (prefix of the job keys)
  KEYS[2]  webhooks   ZSET   member = job id, score = when its next delivery attempt is due (ms)

  ARGV[1]  now_ms       integer, or "" for Redis TIME
  ARGV[2]  job_id       string
  ARGV[3]  attempt      integer >= 1, this attempt's number
  ARGV[4]  status_code  integer HTTP status, or "" when the attempt got no reply
  ARGV[5]  error        string, why the attempt failed ("" when it got a reply)
  ARGV[6]  retry_ms     integer, delay before the next attempt; "" = no next attempt

  Returns  {"OK"} | {"NOT_FOUND"} (the job is gone; the delivery is forgotten)
  Errors   error "BAD_ARG <name>" for malformed ARGV, before any write
  Writes   HSET job:<id> webhook_deliveries (JSON array, one entry per attempt:
           {attempt, status_code?, error?, at_ms}); ZADD or ZREM webhooks
  Derived  P job:<id>   HASH   the job record (id from ARGV)
  Bounds   webhook_deliveries: one entry per attempt, at most the deliverer's attempt limit;
           the field goes with the job record
  Cost     O(attempts)
]]
-- @include base

local P = prefix_of(KEYS[1])
local now = clock(ARGV[1])
local job_id = ARGV[2]
local attempt = num(ARGV[3], "attempt")
local status_code = ARGV[4]
local err = ARGV[5]
local retry_ms = ARGV[6]
if status_code ~= "" then status_code = num(status_code, "status_code") end
if retry_ms ~= "" then retry_ms = num(retry_ms, "retry_ms") end

local job_key = P .. "job:" .. job_id
if redis.call("EXISTS", job_key) == 0 then
  redis.call("ZREM", KEYS[2], job_id)
  return {"NOT_FOUND"}
end
local entry = {attempt = attempt, at_ms = now}
if status_code ~= "" then entry.status_code = status_code end
if err ~= "" then entry.error = err end
local text = redis.call("HGET", job_key, "webhook_deliveries")
local list = {}
if text and text ~= "" then list = cjson.decode(text) end
table.insert(list, entry)
redis.call("HSET", job_key, "webhook_deliveries", cjson.encode(list))
if retry_ms == "" then
  redis.call("ZREM", KEYS[2], job_id)
else
  redis.call("ZADD", KEYS[2], now + retry_ms, job_id)
end
return {"OK"}
