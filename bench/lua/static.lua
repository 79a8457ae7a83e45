-- GET / on the baseline servers (nginx return 200, the express peer).
package.path = package.path .. ";" .. (os.getenv("BENCH_LUA") or "bench/lua") .. "/?.lua"
local c = require("common")
function init(args) c.seed() end
function request() return wrk.format("GET", "/", nil, nil) end
done = c.done
