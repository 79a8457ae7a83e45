-- GET /users/{userId}/sessions (the population has 10 sessions per user).
package.path = package.path .. ";" .. (os.getenv("BENCH_LUA") or "bench/lua") .. "/?.lua"
local c = require("common")
local users = 1000
function init(args) users = tonumber(args[2] or "1000"); c.seed() end
function request()
  return wrk.format("GET", "/users/user-" .. math.random(0, users - 1) .. "/sessions?limit=20", nil, nil)
end
done = c.done
