-- GET /sessions/{id}/validate with a random id of the population.
package.path = package.path .. ";" .. (os.getenv("BENCH_LUA") or "bench/lua") .. "/?.lua"
local c = require("common")
local ids
function init(args) local _; _, ids = c.load(args[1]); c.seed() end
function request()
  return wrk.format("GET", "/sessions/" .. ids[math.random(#ids)] .. "/validate", nil, nil)
end
done = c.done
