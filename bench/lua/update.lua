-- PUT /sessions/{id} with If-Match. Each thread tracks the versions it has
-- seen (from the responses' ETag + sessionId); a stale guess answers 412,
-- which is counted by bench.py as a correct precondition failure.
package.path = package.path .. ";" .. (os.getenv("BENCH_LUA") or "bench/lua") .. "/?.lua"
local c = require("common")
local ids, version = nil, {}
function init(args) local _; _, ids = c.load(args[1]); c.seed() end
function request()
  local id = ids[math.random(#ids)]
  return wrk.format("PUT", "/sessions/" .. id,
    { ["Content-Type"] = "application/json", ["If-Match"] = '"' .. (version[id] or 1) .. '"' },
    string.format('{"data":{"n":%d},"geoLocation":"NL"}', math.random(1000)))
end
function response(status, headers, body)
  local id = body:match('"sessionId":"([%w_-]+)"')
  local etag = headers["ETag"]
  if id and etag then version[id] = tonumber(etag:match("%d+")) end
end
done = c.done
