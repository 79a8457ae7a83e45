-- GET /validate on the express/connect-redis peer (bench/peer/server.js) with
-- a random session cookie of the population (rolling expiry on, as in
-- production). args[1]: file from bench/peer/populate.js, one Cookie header
-- value ("connect.sid=s%3A...") per line.
package.path = package.path .. ";" .. (os.getenv("BENCH_LUA") or "bench/lua") .. "/?.lua"
local c = require("common")
local cookies

local function load_cookies(path)
  local t = {}
  local f = assert(io.open(path, "r"))
  for line in f:lines() do
    local v = line:match("^%s*(%S+)%s*$")
    if v then t[#t + 1] = v end
  end
  f:close()
  assert(#t > 0, "no cookies in " .. tostring(path))
  return t
end

function init(args) cookies = load_cookies(args[1]); c.seed() end
function request()
  return wrk.format("GET", "/validate",
    { ["Cookie"] = cookies[math.random(#cookies)] }, nil)
end
done = c.done
