-- rate: fixed-window rate limits of a queue (claims and submits), counted inside the script that
-- takes the jobs, so the limit is exact across any number of API processes.
-- Keys built here: none (the window key is given: P rate for claims, P submit_rate for submits;
-- each is a STRING "<window start ms>:<count>" that expires at the end of its window).

-- The window `now` falls in and how much of it is used: start, used. The window lives in the
-- value, not in the key's expiry, so it follows the now_ms seam.
local function rate_window(key, now, per_ms)
  local start, used = string.match(redis.call("GET", key) or "", "^(%d+):(%d+)$")
  start, used = tonumber(start), tonumber(used)
  if start and now >= start and now < start + per_ms then return start, used end
  return now, 0
end

-- Records `taken` more uses of the window (start, used) found by rate_window.
local function rate_take(key, start, used, taken, per_ms)
  if taken > 0 then redis.call("SET", key, start .. ":" .. (used + taken), "PX", per_ms) end
end
