-- POST /sessions: durable creates (fsync'd before the 201).
package.path = package.path .. ";" .. (os.getenv("BENCH_LUA") or "bench/lua") .. "/?.lua"
local c = require("common")
local n = 0
function init(args) c.seed() end
function request()
  n = n + 1
  return wrk.format("POST", "/sessions", { ["Content-Type"] = "application/json" },
    string.format('{"userId":"bench-%d","ipAddress":"203.0.113.%d","userAgent":"wrk","deviceId":"d%d"}',
      math.random(1000000), n % 250, n))
end
done = c.done
