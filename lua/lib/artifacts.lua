-- artifacts: forget a purged job's artifacts and give their bytes back to the queue's quota.
-- Keys built here: P art:<id> (the job's artifact index), P artdata:<upload> (chunks of one
-- stored artifact, Redis backend), P artbytes (bytes of the queue's committed artifacts).

-- Bounded: a job holds at most the artifact count the commit script allows.
local function drop_artifacts(P, id)
  local index = P .. "art:" .. id
  local metas = redis.call("HVALS", index)
  if #metas == 0 then return end
  local freed = 0
  for _, text in ipairs(metas) do
    local meta = cjson.decode(text)
    freed = freed + (tonumber(meta.size) or 0)
    redis.call("DEL", P .. "artdata:" .. meta.upload)
  end
  redis.call("DEL", index)
  if redis.call("DECRBY", P .. "artbytes", freed) <= 0 then redis.call("DEL", P .. "artbytes") end
end
