-- PUT /sessions/{id} with If-Match. Each thread updates its own share of
-- the sessions (every WRK_THREADS-th id, from its own offset) and tracks
-- the versions it has seen (from the responses' ETag + sessionId); a
-- session it knows no version of yet is sent If-Match: * (any current
-- version), and the reply teaches it the version. A guess goes stale only
-- when two of its own connections update one session at once: that 412 is
-- a correct precondition failure, counted as non-2xx. (Threads sharing
-- every id and guessing version 1 made most "updates" 412s:
-- docs/performance.md, 2026-12-06.)
package.path = package.path .. ";" .. (os.getenv("BENCH_LUA") or "bench/lua") .. "/?.lua"
local c = require("common")
local ids, version = {}, {}
local started = 0
function setup(thread)
  thread:set("offset", started)
  started = started + 1
end
function init(args)
  local _, all = c.load(args[1])
  local step = tonumber(os.getenv("WRK_THREADS") or "1")
  -- UPDATE_HOT (a fraction, default 1): only the newest part of the
  -- population is updated (the file lists sessions oldest first).
  local hot = tonumber(os.getenv("UPDATE_HOT") or "1")
  local first = math.floor(#all * (1 - hot)) + 1
  for i = first + (offset or 0), #all, step do ids[#ids + 1] = all[i] end
  c.seed()
end
function request()
  local id = ids[math.random(#ids)]
  return wrk.format("PUT", "/sessions/" .. id,
    { ["Content-Type"] = "application/json",
      ["If-Match"] = version[id] and '"' .. version[id] .. '"' or "*" },
    string.format('{"data":{"n":%d},"geoLocation":"NL"}', math.random(1000)))
end
function response(status, headers, body)
  local id = body:match('"sessionId":"([%w_-]+)"')
  local etag = headers["ETag"]
  if id and etag then version[id] = tonumber(etag:match("%d+")) end
end
done = c.done
