// Every key Better Auth can generate (jwks.keyPairConfig.alg): EdDSA, ES256, ES512, RS256 and
// PS256, each created and used by the real better-auth 1.7.25, verified by auth_jwt in PostgreSQL
// with the same strictness; and a table holding keys of all five at once (keyPairConfigs).

import { test, after } from "node:test";
import assert from "node:assert/strict";
import pg from "pg";
import { signJWT } from "better-auth/plugins/jwt";
import { setup, signUp, apiToken, httpJwks, decodePart, dropDatabase, BASE_URL } from "./app.mjs";

const ALGS = ["EdDSA", "ES256", "ES512", "RS256", "PS256"];
const CURVES = { EdDSA: "Ed25519", ES256: "P-256", ES512: "P-521", RS256: null, PS256: null };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const dbs = [];
let n = 0;
async function fresh(opts) {
  const name = `interop_alg_${process.pid}_${n++}`;
  dbs.push(name);
  return { name, ...(await setup(name, opts)) };
}
after(async () => {
  for (const name of dbs) await dropDatabase(name);
});

async function client(name, user = "postgres") {
  const c = new pg.Client({ host: process.env.PGHOST, port: Number(process.env.PGPORT), user, database: name });
  await c.connect();
  return c;
}

async function verify(c, token) {
  try {
    return (await c.query("SELECT auth_jwt.jwt_verify($1) AS claims", [token])).rows[0].claims;
  } catch (e) {
    return { error: e.message, code: e.code };
  }
}

/** A token for `userId` signed by Better Auth's own signJWT with a key of `alg`, as its OAuth
 *  provider plugin does for audiences pinned to another algorithm (minted from keyPairConfigs). */
async function signedWith(auth, jwks, alg, userId) {
  const ctx = { context: await auth.$context };
  return signJWT(ctx, { options: { jwks }, payload: { sub: userId }, signingAlgorithm: alg });
}

async function titles(c, token) {
  await c.query("BEGIN");
  try {
    await c.query("SET LOCAL ROLE authenticated");
    await c.query("SELECT set_config('auth_jwt.token', $1, true)", [`Bearer ${token}`]);
    return (await c.query("SELECT title FROM tasks ORDER BY title")).rows.map((r) => r.title);
  } finally {
    await c.query("COMMIT").catch(() => c.query("ROLLBACK"));
  }
}

for (const alg of ALGS) {
  test(`${alg}: Better Auth's own keys and tokens verify, RLS isolates, rotation keeps the grace period`, async () => {
    const jwks = { keyPairConfig: { alg }, rotationInterval: 3, gracePeriod: 3 };
    const { name, auth, db } = await fresh({ jwks, keyGrace: 3 });
    const users = [];
    for (const email of ["ada@example.com", "bob@example.com"]) {
      const { user, cookie } = await signUp(auth, email);
      const { rows } = await db.query('SELECT uuid::text FROM "user" WHERE id = $1', [user.id]);
      await db.query("INSERT INTO tasks (user_id, title) VALUES ($1, $2)", [rows[0].uuid, `task of ${email}`]);
      users.push({ email, cookie, token: await apiToken(auth, cookie) });
    }
    const header = decodePart(users[0].token, 0);
    assert.equal(header.alg, alg, "Better Auth signed with the configured algorithm");
    const row = (await db.query('SELECT alg, crv, "publicKey" FROM jwks WHERE id = $1', [header.kid])).rows[0];
    assert.equal(row.alg, alg);
    assert.equal(row.crv, CURVES[alg]);

    const c = await client(name);
    assert.deepEqual(await verify(c, users[0].token), decodePart(users[0].token, 1), "the claims exactly as signed");
    const { rows: keys } = await c.query("SELECT alg, key_type, status FROM auth_jwt.jwks_keys() WHERE kid = $1", [header.kid]);
    assert.deepEqual(keys.map((k) => [k.alg, k.status]), [[alg, "usable"]]);

    const app = await client(name, "authenticator");
    for (const u of users) assert.deepEqual(await titles(app, u.token), [`task of ${u.email}`]);

    // A header naming another algorithm under this key's kid: the key decides, refused before
    // any signature is checked (or, where that algorithm fixes another signature length, even
    // before the key is looked up).
    const other = ALGS[(ALGS.indexOf(alg) + 1) % ALGS.length];
    const relabeled = Buffer.from(JSON.stringify({ alg: other, kid: header.kid })).toString("base64url") + users[0].token.slice(users[0].token.indexOf("."));
    const refused = await verify(c, relabeled);
    assert.equal(refused.code, "28000");
    assert.match(refused.error, /unable to find matching signing key|malformed token/);

    // Rotation: after rotationInterval a new key signs; the old key's tokens verify through the
    // grace period, in a backend that had cached the old key set.
    await sleep(3300);
    const fresher = await apiToken(auth, users[0].cookie);
    assert.notEqual(decodePart(fresher, 0).kid, header.kid, "Better Auth rotated the key");
    assert.equal(decodePart(fresher, 0).alg, alg);
    assert.ok((await verify(c, fresher)).sub, "the new key works at once");
    assert.ok((await verify(c, users[0].token)).sub, "the old key is in its grace period");
    const published = (await httpJwks(auth)).map((k) => k.kid).sort();
    const { rows: ours } = await c.query("SELECT kid FROM auth_jwt.jwks_keys() WHERE status IN ('usable', 'in grace') ORDER BY kid");
    assert.deepEqual(ours.map((r) => r.kid), published, "/api/auth/jwks and jwks_keys() agree");
    await c.end();
    await app.end();
    await db.end();
  });
}

test("one key table with all five algorithms (keyPairConfigs): every token verifies, jwks_keys() matches /api/auth/jwks", async () => {
  const jwks = { keyPairConfig: { alg: "EdDSA" }, keyPairConfigs: ALGS.slice(1).map((alg) => ({ alg })) };
  const { name, auth, db } = await fresh({ jwks });
  const { user, cookie } = await signUp(auth, "ada@example.com");
  const c = await client(name);
  assert.equal(decodePart(await apiToken(auth, cookie), 0).alg, "EdDSA", "the primary algorithm signs by default");
  for (const alg of ALGS) {
    const token = await signedWith(auth, jwks, alg, user.id);
    assert.equal(decodePart(token, 0).alg, alg);
    const claims = await verify(c, token);
    assert.equal(claims.sub, user.id, `${alg}: ${JSON.stringify(claims)}`);
    assert.equal(claims.iss, BASE_URL);
  }
  const { rows } = await c.query("SELECT kid, alg, status FROM auth_jwt.jwks_keys() ORDER BY kid");
  assert.deepEqual([...new Set(rows.map((r) => r.alg))].sort(), [...ALGS].sort());
  assert.ok(rows.every((r) => r.status === "usable"), JSON.stringify(rows));
  const published = (await httpJwks(auth)).map((k) => [k.kid, k.alg]).sort();
  assert.deepEqual(rows.map((r) => [r.kid, r.alg]).sort(), published);
  await c.end();
  await db.end();
});

for (const alg of ALGS) {
  test(`${alg}: Better Auth's cookie-cache JWTs (same keys) are never accepted as bearer tokens`, async () => {
    const { name, auth, db } = await fresh({ jwks: { keyPairConfig: { alg } }, cookieCache: true });
    const { headers } = await auth.api.signUpEmail({
      body: { email: "ada@example.com", password: "correct horse battery staple", name: "ada" },
      returnHeaders: true,
    });
    const cached = headers.getSetCookie().map((c) => c.split(";")[0]).find((c) => c.startsWith("better-auth.session_data="));
    assert.ok(cached, "Better Auth set the cookie cache");
    const jwt = cached.slice(cached.indexOf("=") + 1);
    const header = decodePart(jwt, 0);
    assert.equal(header.typ, "better-auth.session-cache+jwt");
    assert.equal(header.alg, alg);
    assert.equal(decodePart(jwt, 1).aud, "better-auth:session-cache");
    const c = await client(name);
    for (const audience of [BASE_URL, "*"]) {
      await c.query(`SET auth_jwt.audience = '${audience}'`);
      const r = await verify(c, jwt);
      assert.equal(r.code, "28000", `refused with audience ${audience}`);
      assert.match(r.error, /malformed token/);
    }
    await c.end();
    await db.end();
  });
}
