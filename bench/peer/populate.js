"use strict";
// Writes N sessions straight into Redis exactly as connect-redis stores them
// for server.js (key "sess:<sid>", JSON value, EX 3600) and one Cookie header
// value per line to OUTFILE, for bench/lua/peer_validate.lua.
//
// Usage: node populate.js REDIS_URL N OUTFILE [USERS]
//   USERS: distinct user ids (user-<i % USERS>), default max(1, N/10) as in
//   bench/populate.py.  SESSION_SECRET env must match server.js (default
//   "bench-secret").

const crypto = require("node:crypto");
const fs = require("node:fs");
const path = require("node:path");
const { createClient } = require("redis");

// the cookie-signature copy express-session itself uses (not whatever a
// different dependency might have hoisted)
const signature = require(require.resolve("cookie-signature", {
  paths: [path.dirname(require.resolve("express-session"))],
}));

const TTL_S = 3600; // == server.js cookie maxAge
const BATCH = 5000;

async function main() {
  const [redisUrl, nArg, outFile, usersArg] = process.argv.slice(2);
  const n = parseInt(nArg, 10);
  if (!redisUrl || !outFile || !(n > 0)) {
    console.error("usage: node populate.js REDIS_URL N OUTFILE [USERS]");
    process.exit(2);
  }
  const users = usersArg ? parseInt(usersArg, 10) : Math.max(1, Math.floor(n / 10));
  const secret = process.env.SESSION_SECRET || "bench-secret";

  const client = createClient({ url: redisUrl });
  client.on("error", (err) => console.error("redis error:", err.message));
  await client.connect();

  const t0 = Date.now();
  const out = fs.createWriteStream(outFile);
  for (let start = 0; start < n; start += BATCH) {
    const end = Math.min(n, start + BATCH);
    const expires = new Date(Date.now() + TTL_S * 1000).toISOString();
    const multi = client.multi();
    const lines = [];
    for (let i = start; i < end; i++) {
      // same shape as express-session's uid-safe(24): 32 base64url chars
      const sid = crypto.randomBytes(24).toString("base64url");
      // same JSON express-session's Session/Cookie serialise to for
      // server.js's cookie options (verified against a real POST /login)
      const sess = {
        cookie: {
          originalMaxAge: TTL_S * 1000,
          expires,
          httpOnly: true,
          path: "/",
          sameSite: "lax",
        },
        userId: `user-${i % users}`,
      };
      multi.set("sess:" + sid, JSON.stringify(sess), { EX: TTL_S });
      lines.push("connect.sid=" + encodeURIComponent("s:" + signature.sign(sid, secret)));
    }
    await multi.execAsPipeline();
    if (!out.write(lines.join("\n") + "\n")) {
      await new Promise((r) => out.once("drain", r));
    }
  }
  await new Promise((r, j) => out.end((err) => (err ? j(err) : r())));
  await client.quit();
  console.log(`populated ${n} sessions in ${((Date.now() - t0) / 1000).toFixed(2)} s -> ${outFile}`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
