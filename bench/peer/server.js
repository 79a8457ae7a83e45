"use strict";
// Comparison peer for the sessiond benchmark: the service most teams would
// write instead of sessiond -- express + express-session + connect-redis,
// validating a signed session cookie against Redis.
//
// Env: PORT (listen on 127.0.0.1:PORT, default 3390)
//      REDIS_URL (default redis://127.0.0.1:6390)
//      SESSION_SECRET (default "bench-secret"; must match populate.js)
//      WORKERS (default 1; >1 forks that many processes with node:cluster)
//
// Routes: GET /          -> 200 {"ok":true}            (framework floor)
//         GET /validate  -> 200 {"isValid":true,"userId":...,"sessionId":...}
//                           401 {"isValid":false}
//         POST /login    {"userId":...} -> 201, sets the session cookie

const cluster = require("node:cluster");

const PORT = parseInt(process.env.PORT || "3390", 10);
const REDIS_URL = process.env.REDIS_URL || "redis://127.0.0.1:6390";
const SESSION_SECRET = process.env.SESSION_SECRET || "bench-secret";
const WORKERS = Math.max(1, parseInt(process.env.WORKERS || "1", 10) || 1);

if (WORKERS > 1 && cluster.isPrimary) {
  let ready = 0;
  for (let i = 0; i < WORKERS; i++) {
    const w = cluster.fork();
    w.on("message", (m) => {
      if (m === "listening" && ++ready === WORKERS) console.log("listening");
    });
  }
  cluster.on("exit", (w, code, signal) => {
    console.error(`worker ${w.process.pid} exited (${signal || code})`);
  });
  const stop = () => {
    for (const id in cluster.workers) cluster.workers[id].kill();
    process.exit(0);
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
} else {
  main().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}

async function main() {
  const express = require("express");
  const session = require("express-session");
  const RedisStore = require("connect-redis").default;
  const { createClient } = require("redis");

  const redisClient = createClient({ url: REDIS_URL });
  redisClient.on("error", (err) => console.error("redis error:", err.message));
  await redisClient.connect();

  const app = express();
  app.use(
    session({
      store: new RedisStore({ client: redisClient, prefix: "sess:" }),
      secret: SESSION_SECRET,
      resave: false,
      saveUninitialized: false,
      rolling: true, // re-send the cookie and push the expiry (EXPIRE) on every request
      cookie: { maxAge: 3600 * 1000, httpOnly: true, sameSite: "lax" },
    })
  );

  app.get("/", (req, res) => {
    res.status(200).json({ ok: true });
  });

  app.get("/validate", (req, res) => {
    if (req.session && req.session.userId != null) {
      res.status(200).json({
        isValid: true,
        userId: req.session.userId,
        sessionId: req.sessionID,
      });
    } else {
      res.status(401).json({ isValid: false });
    }
  });

  app.post("/login", express.json(), (req, res, next) => {
    const userId = req.body && req.body.userId;
    if (userId == null || userId === "") {
      return res.status(400).json({ error: "userId required" });
    }
    // new session id on login (session-fixation hygiene, as a real app would)
    req.session.regenerate((err) => {
      if (err) return next(err);
      req.session.userId = userId;
      req.session.save((err2) => {
        if (err2) return next(err2);
        res.status(201).json({ ok: true, userId, sessionId: req.sessionID });
      });
    });
  });

  const server = app.listen(PORT, "127.0.0.1", () => {
    if (cluster.isWorker) process.send("listening");
    else console.log("listening");
  });

  const stop = () => {
    server.close();
    redisClient.quit().catch(() => {}).finally(() => process.exit(0));
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}
