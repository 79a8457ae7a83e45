-- The article's mix: 40M retrievals + 40M validations : 10M creates + 2M
-- updates + 10M deletes a day, i.e. 39% GET, 39% validate, 10% create,
-- 2% update, 10% delete (of sessions this thread created). The update
-- merges data (not a privilege change, which would renew the token and
-- leave the population's token list stale). Responses are counted by
-- status class per thread; done() adds them to the BENCHJSON line.
package.path = package.path .. ";" .. (os.getenv("BENCH_LUA") or "bench/lua") .. "/?.lua"
local c = require("common")
local tokens, ids
local mine = {}
local threads = {}
s2xx, s4xx, s5xx = 0, 0, 0
function setup(thread) threads[#threads + 1] = thread end
function init(args) tokens, ids = c.load(args[1]); c.seed() end
function request()
  local r = math.random(100)
  if r <= 39 then
    return wrk.format("GET", "/sessions/" .. ids[math.random(#ids)], nil, nil)
  elseif r <= 78 then
    return wrk.format("POST", "/sessions/validate",
      { ["Authorization"] = "Bearer " .. tokens[math.random(#tokens)] }, nil)
  elseif r <= 88 or #mine == 0 then
    return wrk.format("POST", "/sessions", { ["Content-Type"] = "application/json" },
      string.format('{"userId":"mixed-%d","ipAddress":"198.51.100.7"}', math.random(100000)))
  elseif r <= 90 then
    return wrk.format("PUT", "/sessions/" .. ids[math.random(#ids)],
      { ["Content-Type"] = "application/json" }, string.format('{"data":{"soak":%d}}', math.random(1000)))
  else
    return wrk.format("DELETE", "/sessions/" .. table.remove(mine), nil, nil)
  end
end
function response(status, headers, body)
  if status >= 500 then s5xx = s5xx + 1
  elseif status >= 400 then s4xx = s4xx + 1
  else s2xx = s2xx + 1 end
  if status == 201 then
    local id = body:match('"sessionId":"([%w_-]+)"')
    if id then mine[#mine + 1] = id end
  end
end
function done(summary, latency, requests)
  local n = { s2xx = 0, s4xx = 0, s5xx = 0 }
  for _, t in ipairs(threads) do
    for k in pairs(n) do n[k] = n[k] + (t:get(k) or 0) end
  end
  c.done(summary, latency, requests, n)
end
