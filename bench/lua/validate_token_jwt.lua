-- POST /sessions/validate?accessToken=true with a random token of the
-- population: the validation of validate_token.lua plus a signed access
-- token (EdDSA) in the answer (issue 18: minting costs at most 1.5x).
package.path = package.path .. ";" .. (os.getenv("BENCH_LUA") or "bench/lua") .. "/?.lua"
local c = require("common")
local tokens
function init(args) tokens = c.load(args[1]); c.seed() end
function request()
  return wrk.format("POST", "/sessions/validate?accessToken=true",
    { ["Authorization"] = "Bearer " .. tokens[math.random(#tokens)] }, nil)
end
done = c.done
