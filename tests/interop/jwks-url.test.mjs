// Keys from wherever Better Auth runs: the real Better Auth on its memory adapter (so no jwks table
// exists in any database) serves GET /api/auth/jwks over HTTP and HTTPS on loopback, and auth_jwt
// verifies its tokens through auth_jwt.jwks_url, with rotation (rotationInterval, gracePeriod) and
// an outage. Abuse cases (slow, huge, redirected...) are in tests/integration/test_jwks_url.py.

import { test, after, before } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, chmodSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import http from "node:http";
import https from "node:https";
import pg from "pg";
import { betterAuth } from "better-auth";
import { memoryAdapter } from "better-auth/adapters/memory";
import { toNodeHandler } from "better-auth/node";
import { authOptions, createDatabase, dropDatabase, signUp, apiToken, decodePart, BASE_URL } from "./app.mjs";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const connect = async (database, user = "postgres") => {
  const c = new pg.Client({ host: process.env.PGHOST, port: Number(process.env.PGPORT), user, database });
  await c.connect();
  return c;
};

// A CA and a certificate for 127.0.0.1, made with openssl, readable by the database server.
const pki = mkdtempSync(`${tmpdir()}/auth_jwt-interop-pki-`);
chmodSync(pki, 0o755);
const openssl = (...args) => execFileSync("openssl", args, { cwd: pki, stdio: "pipe" });
openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=interop CA");
openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "srv.key", "-out", "srv.csr", "-subj", "/CN=127.0.0.1");
execFileSync("sh", ["-c", "printf 'subjectAltName=IP:127.0.0.1\\n' > ext.cnf"], { cwd: pki });
openssl("x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "srv.pem", "-days", "2", "-extfile", "ext.cnf");
chmodSync(`${pki}/ca.pem`, 0o644);

const cleanups = [];
after(async () => {
  for (const f of cleanups.reverse()) await f();
  rmSync(pki, { recursive: true, force: true });
});

/** Better Auth on its memory adapter, served over HTTP or HTTPS on a free loopback port; counts
 *  the requests for its JWKS. */
async function authServer({ tls = false, jwks = {} } = {}) {
  const store = { user: [], session: [], account: [], verification: [], jwks: [] };
  const auth = betterAuth({ ...authOptions(memoryAdapter(store), { jwks }) });
  const served = { jwks: 0 };
  const handler = toNodeHandler(auth);
  const listener = (req, res) => {
    if (req.url.startsWith("/api/auth/jwks")) served.jwks++;
    return handler(req, res);
  };
  const server = tls
    ? https.createServer({ key: readFileSync(`${pki}/srv.key`), cert: readFileSync(`${pki}/srv.pem`) }, listener)
    : http.createServer(listener);
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const url = `${tls ? "https" : "http"}://127.0.0.1:${server.address().port}/api/auth/jwks`;
  const stop = () => new Promise((r) => { server.closeAllConnections?.(); server.close(r); });
  cleanups.push(stop);
  return { auth, store, served, url, stop };
}

let n = 0;
/** The app's own database: auth_jwt and a tasks table under RLS, and no Better Auth table at all. */
async function appDatabase(settings) {
  const name = `interop_url_${process.pid}_${n++}`;
  await createDatabase(name);
  cleanups.push(() => dropDatabase(name));
  const c = await connect(name);
  await c.query("SET client_min_messages = warning");
  await c.query(`
    CREATE EXTENSION auth_jwt;
    DO $$ BEGIN
      IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'authenticated') THEN CREATE ROLE authenticated NOLOGIN; END IF;
      IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'authenticator') THEN CREATE ROLE authenticator LOGIN NOINHERIT; END IF;
    END $$;
    GRANT authenticated TO authenticator;
    CREATE TABLE tasks (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                        user_id uuid NOT NULL DEFAULT auth_jwt.jwt_claim_uuid(), title text NOT NULL);
    ALTER TABLE tasks ENABLE ROW LEVEL SECURITY;
    CREATE POLICY own ON tasks TO authenticated
      USING (user_id = auth_jwt.jwt_claim_uuid()) WITH CHECK (user_id = auth_jwt.jwt_claim_uuid());
    GRANT SELECT, INSERT ON tasks TO authenticated;
  `);
  const all = { issuer: BASE_URL, audience: BASE_URL, jwks_max_age: "60s", jwks_cooldown: "1s", ...settings };
  for (const [k, v] of Object.entries(all)) await c.query(`ALTER DATABASE ${name} SET auth_jwt.${k} = '${v}'`);
  const { rows } = await c.query("SELECT to_regclass('public.jwks') AS t");
  assert.equal(rows[0].t, null, "no jwks table in the app's database");
  await c.end();
  return name;
}

/** A PostgREST-style transaction as `authenticated` with `token`: the rows of `sql`, or the error. */
async function asUser(c, token, sql) {
  await c.query("BEGIN");
  try {
    await c.query("SET LOCAL ROLE authenticated");
    await c.query("SELECT set_config('auth_jwt.token', $1, true)", [`Bearer ${token}`]);
    const { rows } = await c.query(sql);
    await c.query("COMMIT");
    return rows;
  } catch (e) {
    await c.query("ROLLBACK");
    return { code: e.code, error: e.message, detail: e.detail };
  }
}

test("Better Auth elsewhere: its tokens verify through its JWKS URL and RLS isolates users", async () => {
  const ba = await authServer();
  const db = await appDatabase({ jwks_url: ba.url });
  const c = await connect(db, "authenticator");
  const [ada, bob] = [await signUp(ba.auth, "ada@example.com"), await signUp(ba.auth, "bob@example.com")];
  const [ta, tb] = [await apiToken(ba.auth, ada.cookie), await apiToken(ba.auth, bob.cookie)];
  assert.deepEqual(await asUser(c, ta, "INSERT INTO tasks (title) VALUES ('ada''s') RETURNING title"), [{ title: "ada's" }]);
  assert.deepEqual(await asUser(c, tb, "INSERT INTO tasks (title) VALUES ('bob''s') RETURNING title"), [{ title: "bob's" }]);
  assert.deepEqual(await asUser(c, ta, "SELECT title FROM tasks"), [{ title: "ada's" }]);
  assert.deepEqual(await asUser(c, tb, "SELECT title FROM tasks"), [{ title: "bob's" }]);
  const bad = await asUser(c, ta, "INSERT INTO tasks (user_id, title) VALUES (gen_random_uuid(), 'x') RETURNING 1");
  assert.equal(bad.code, "42501", "RLS WITH CHECK");
  assert.equal(ba.served.jwks, 1, "one fetch served every request of this backend");
  const ops = await connect(db); // jwks_keys() is for operators
  const { rows } = await ops.query("SELECT kid, alg, status, source FROM auth_jwt.jwks_keys()");
  assert.deepEqual(rows, [{ kid: decodePart(ta, 0).kid, alg: "EdDSA", status: "usable", source: new URL(ba.url).host }]);
  await ops.end();
  await c.end();
});

test("over HTTPS with auth_jwt.jwks_ca_file; without the CA, a TLS error that names the host", async () => {
  const ba = await authServer({ tls: true });
  const { cookie } = await signUp(ba.auth, "tls@example.com");
  const token = await apiToken(ba.auth, cookie);
  const good = await connect(await appDatabase({ jwks_url: ba.url, jwks_ca_file: `${pki}/ca.pem` }), "authenticator");
  assert.deepEqual(await asUser(good, token, "SELECT count(*)::int AS n FROM tasks"), [{ n: 0 }]);
  const bad = await connect(await appDatabase({ jwks_url: ba.url }), "authenticator");
  const r = await asUser(bad, token, "SELECT count(*) FROM tasks");
  assert.equal(r.code, "58000");
  assert.equal(r.error, `auth_jwt cannot fetch keys from ${new URL(ba.url).host}`);
  assert.match(r.detail, /UnknownIssuer/);
  await good.end();
  await bad.end();
});

test("rotation: a new key is fetched at once, the old one verifies through its grace period, then stops", async () => {
  const ba = await authServer({ jwks: { rotationInterval: 2, gracePeriod: 3 } });
  const db = await appDatabase({ jwks_url: ba.url, jwks_max_age: "1s", jwks_cooldown: "1s" });
  const c = await connect(db, "authenticator");
  const { cookie } = await signUp(ba.auth, "rotate@example.com");
  const oldToken = await apiToken(ba.auth, cookie);
  assert.deepEqual(await asUser(c, oldToken, "SELECT count(*)::int AS n FROM tasks"), [{ n: 0 }]);
  await sleep(2200); // past rotationInterval: the next token is signed by a new key
  const newToken = await apiToken(ba.auth, cookie);
  assert.notEqual(decodePart(newToken, 0).kid, decodePart(oldToken, 0).kid, "Better Auth rotated");
  assert.deepEqual(await asUser(c, newToken, "SELECT count(*)::int AS n FROM tasks"), [{ n: 0 }], "the new kid is fetched");
  assert.deepEqual(await asUser(c, oldToken, "SELECT count(*)::int AS n FROM tasks"), [{ n: 0 }], "the old key is in its grace period");
  await sleep(3500); // past the old key's expiresAt + gracePeriod: Better Auth drops it from the JWKS
  const r = await asUser(c, oldToken, "SELECT count(*) FROM tasks");
  assert.deepEqual([r.code, r.error], ["28000", "unable to find matching signing key"]);
  assert.deepEqual(await asUser(c, newToken, "SELECT count(*)::int AS n FROM tasks"), [{ n: 0 }]);
  assert.ok(ba.served.jwks <= 8, `few requests for a few seconds of traffic (${ba.served.jwks})`);
  await c.end();
});

test("Better Auth down: the last good keys keep verifying for jwks_stale_if_error, then a clear error", async () => {
  const ba = await authServer();
  const db = await appDatabase({ jwks_url: ba.url, jwks_max_age: "1s", jwks_stale_if_error: "3s" });
  const c = await connect(db, "authenticator");
  const { cookie } = await signUp(ba.auth, "outage@example.com");
  const token = await apiToken(ba.auth, cookie);
  assert.deepEqual(await asUser(c, token, "SELECT count(*)::int AS n FROM tasks"), [{ n: 0 }]);
  await ba.stop();
  await sleep(1200);
  assert.deepEqual(await asUser(c, token, "SELECT count(*)::int AS n FROM tasks"), [{ n: 0 }], "stale, within the window");
  await sleep(2200);
  const r = await asUser(c, token, "SELECT count(*) FROM tasks");
  assert.equal(r.code, "58000");
  assert.equal(r.error, `auth_jwt cannot fetch keys from ${new URL(ba.url).host}`);
  assert.match(r.detail, /connection refused/);
  assert.ok(!r.detail.includes(token.split(".")[2]));
  await c.end();
});
