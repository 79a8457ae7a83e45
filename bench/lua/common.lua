-- common.lua - shared by the wrk scripts: token/id lists and a done() that
-- prints the latency percentiles as one JSON line for bench.py.
local M = {}

function M.load(path)
  local tokens, ids = {}, {}
  local f = assert(io.open(path, "r"))
  for line in f:lines() do
    local t, id = line:match("^(%S+)%s+(%S+)$")
    if t then tokens[#tokens + 1] = t; ids[#ids + 1] = id end
  end
  f:close()
  return tokens, ids
end

function M.seed()
  -- each wrk thread has its own Lua state: seed each differently
  math.randomseed(os.time() + math.floor(os.clock() * 1e6) + tonumber(tostring({}):match("0x(%x+)") or "0", 16) % 100000)
end

-- extra: optional counters (name -> integer) added to the line.
function M.done(summary, latency, requests, extra)
  local more = ""
  for k, v in pairs(extra or {}) do more = more .. string.format(',"%s":%d', k, v) end
  io.write(string.format(
    'BENCHJSON {"requests":%d,"duration_us":%d,"errors":%d,"non2xx":%d,"p50_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d%s}\n',
    summary.requests, summary.duration,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), latency.max, more))
end

return M
