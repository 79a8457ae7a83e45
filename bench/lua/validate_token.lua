-- POST /sessions/validate with a random token of the population (rolling
-- expiry on, as in production).
package.path = package.path .. ";" .. (os.getenv("BENCH_LUA") or "bench/lua") .. "/?.lua"
local c = require("common")
local tokens
function init(args) tokens = c.load(args[1]); c.seed() end
function request()
  return wrk.format("POST", "/sessions/validate",
    { ["Authorization"] = "Bearer " .. tokens[math.random(#tokens)] }, nil)
end
done = c.done
