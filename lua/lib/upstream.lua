-- upstream: a workflow job's upstream outputs, read by reference from its direct dependencies.
-- Each dependency's outputs stay the JSON text its worker sent: they are concatenated, never
-- decoded, so numbers, empty arrays and every byte survive, and no dependant stores a copy.
-- Keys built here: P job:<id> of each dependency (read only).

-- '{"<dep name>":<its outputs>,...}' of the dependencies that have outputs (those that succeeded).
local function upstream_outputs(P, deps_json)
  local parts = {}
  for _, up in ipairs(cjson.decode(deps_json)) do
    local u = redis.call("HMGET", P .. "job:" .. up, "job_id", "outputs")
    if u[1] and u[2] then parts[#parts + 1] = cjson.encode(u[1]) .. ":" .. u[2] end
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

-- A job's HGETALL row, plus "upstream_outputs" when it has dependencies.
local function with_upstream(P, job_key, row)
  local deps = redis.call("HGET", job_key, "deps")
  if deps and deps ~= "" and deps ~= "[]" then
    row[#row + 1] = "upstream_outputs"
    row[#row + 1] = upstream_outputs(P, deps)
  end
  return row
end
