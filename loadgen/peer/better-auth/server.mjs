// better-auth benchmark peer for the authledger load generator.
//
// Starts from nothing: (re)creates the Postgres database, runs better-auth's
// migrations programmatically, then serves better-auth on 127.0.0.1:PEER_PORT.
// See README.md for the HTTP flow a load client must follow.
import http from "node:http";
import pg from "pg";
import { betterAuth } from "better-auth";
import { twoFactor } from "better-auth/plugins/two-factor";
import { getMigrations } from "better-auth/db/migration";
import { toNodeHandler } from "better-auth/node";
import { hash as argon2Hash, verify as argon2Verify } from "@node-rs/argon2";

const PORT = Number(process.env.PEER_PORT ?? 3900);
const HOST = "127.0.0.1";
const BASE_URL = `http://${HOST}:${PORT}`;
const PG_URL = process.env.PEER_PG_URL ?? "postgres://postgres@127.0.0.1:5432";
const DB_NAME = process.env.PEER_DB_NAME ?? "authledger_peer";
const DB_RESET = (process.env.PEER_DB_RESET ?? "1") !== "0";
const POOL_MAX = Number(process.env.PEER_PG_POOL_MAX ?? 10);
const SECRET =
  process.env.PEER_SECRET ??
  process.env.BETTER_AUTH_SECRET ??
  "authledger-peer-dev-secret-not-for-production-0123456789";
const LOG_LEVEL = process.env.PEER_LOG_LEVEL ?? "error";
// Extra origins accepted in the Origin header besides BASE_URL (comma-separated).
const EXTRA_ORIGINS = (process.env.PEER_TRUSTED_ORIGINS ?? "")
  .split(",")
  .map((s) => s.trim())
  .filter(Boolean);

if (!/^[A-Za-z0-9_]+$/.test(DB_NAME)) throw new Error(`bad PEER_DB_NAME: ${DB_NAME}`);

// OWASP argon2id parameters, identical to authledger's.
const ARGON2 = {
  algorithm: 2, // Algorithm.Argon2id (const enum in the .d.ts)
  memoryCost: 19456, // KiB
  timeCost: 2,
  parallelism: 1,
};

async function prepareDatabase() {
  const admin = new pg.Client({ connectionString: `${PG_URL}/postgres` });
  await admin.connect();
  try {
    if (DB_RESET) {
      await admin.query(`DROP DATABASE IF EXISTS "${DB_NAME}" WITH (FORCE)`);
      await admin.query(`CREATE DATABASE "${DB_NAME}"`);
    } else {
      const r = await admin.query("SELECT 1 FROM pg_database WHERE datname = $1", [DB_NAME]);
      if (r.rowCount === 0) await admin.query(`CREATE DATABASE "${DB_NAME}"`);
    }
  } finally {
    await admin.end();
  }
}

await prepareDatabase();

const pool = new pg.Pool({ connectionString: `${PG_URL}/${DB_NAME}`, max: POOL_MAX });

const authOptions = {
  appName: "authledger-peer",
  baseURL: BASE_URL,
  basePath: "/api/auth",
  trustedOrigins: [BASE_URL, ...EXTRA_ORIGINS],
  secret: SECRET,
  database: pool,
  telemetry: { enabled: false },
  logger: { level: LOG_LEVEL },
  rateLimit: { enabled: false },
  emailAndPassword: {
    enabled: true,
    requireEmailVerification: false,
    autoSignIn: true,
    password: {
      hash: (password) => argon2Hash(password, ARGON2),
      verify: ({ hash, password }) => argon2Verify(hash, password),
    },
  },
  plugins: [
    twoFactor({
      issuer: "authledger-peer",
    }),
  ],
};

const { runMigrations, toBeCreated, toBeAdded } = await getMigrations(authOptions);
await runMigrations();
if (LOG_LEVEL === "debug" || LOG_LEVEL === "info") {
  console.error(
    `migrations: created ${toBeCreated.map((t) => t.table).join(",") || "-"}; ` +
      `altered ${toBeAdded.map((t) => t.table).join(",") || "-"}`,
  );
}

const auth = betterAuth(authOptions);
const authHandler = toNodeHandler(auth);

const server = http.createServer((req, res) => {
  if (req.url === "/healthz") {
    res.writeHead(200, { "content-type": "text/plain" });
    res.end("ok\n");
    return;
  }
  if (req.url?.startsWith("/api/auth/")) {
    authHandler(req, res);
    return;
  }
  res.writeHead(404, { "content-type": "text/plain" });
  res.end("not found\n");
});
server.keepAliveTimeout = 65_000;

server.listen(PORT, HOST, () => {
  console.log(`peer listening on ${BASE_URL}`);
});

const shutdown = () => {
  server.close();
  pool.end().finally(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
};
process.on("SIGINT", shutdown);
process.on("SIGTERM", shutdown);
