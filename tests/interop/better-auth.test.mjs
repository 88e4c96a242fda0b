// Interop with the real Better Auth (npm better-auth 1.7.25 on Node 20): its migrations create
// the tables, its jwt() plugin signs the tokens, and auth_jwt verifies them in PostgreSQL.
// Run by scripts/test (PGHOST/PGPORT point at the test cluster, auth_jwt installed).

import { test, after } from "node:test";
import assert from "node:assert/strict";
import pg from "pg";
import { setup, signUp, apiToken, httpToken, httpJwks, decodePart, dropDatabase, BASE_URL } from "./app.mjs";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const dbs = [];
let n = 0;
async function fresh(opts) {
  const name = `interop_${process.pid}_${n++}`;
  dbs.push(name);
  return { name, ...(await setup(name, opts)) };
}
after(async () => {
  for (const name of dbs) await dropDatabase(name);
});

/** One backend for the whole test: proves caches refresh without reconnecting. */
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

/** A PostgREST-style transaction as `authenticated`, with the token set transaction-locally. */
async function asUser(c, token, sql, params = []) {
  await c.query("BEGIN");
  try {
    await c.query("SET LOCAL ROLE authenticated");
    await c.query("SELECT set_config('auth_jwt.token', $1, true)", [`Bearer ${token}`]);
    return (await c.query(sql, params)).rows;
  } finally {
    await c.query("COMMIT").catch(() => c.query("ROLLBACK"));
  }
}

test("tokens from auth.api.getToken and GET /api/auth/token verify to exactly the signed claims", async () => {
  const { name, auth, db } = await fresh();
  const { user, cookie } = await signUp(auth, "ada@example.com");
  const c = await client(name);
  for (const token of [await apiToken(auth, cookie), await httpToken(auth, cookie)]) {
    const header = decodePart(token, 0);
    assert.equal(header.alg, "EdDSA");
    const claims = await verify(c, token);
    assert.deepEqual(claims, decodePart(token, 1), "jwt_verify returns the payload as signed");
    assert.equal(claims.sub, user.id);
    assert.equal(claims.iss, BASE_URL);
    assert.equal(claims.aud, BASE_URL);
    const { rows } = await db.query('SELECT uuid::text FROM "user" WHERE id = $1', [user.id]);
    assert.equal(claims.uuid, rows[0].uuid, "the uuid claim is the user.uuid column");
    assert.equal((await db.query("SELECT count(*)::int AS n FROM jwks WHERE id = $1", [header.kid])).rows[0].n, 1);
  }
  await c.end();
  await db.end();
});

for (const payload of ["custom", "default"]) {
  test(`jwt_claim_uuid() isolates each user's tasks (${payload} payload)`, async () => {
    const { name, auth, db } = await fresh({ payload });
    const users = [];
    for (const email of ["ada@example.com", "bob@example.com"]) {
      const { user, cookie } = await signUp(auth, email);
      const token = await apiToken(auth, cookie);
      const { rows } = await db.query('SELECT uuid::text FROM "user" WHERE id = $1', [user.id]);
      await db.query("INSERT INTO tasks (user_id, title) VALUES ($1, $2)", [rows[0].uuid, `task of ${email}`]);
      users.push({ email, token, uuid: rows[0].uuid, id: user.id });
    }
    if (payload === "default") {
      const claims = decodePart(users[0].token, 1);
      assert.equal(claims.email, users[0].email, "the default payload is the user object");
    }
    const c = await client(name, "authenticator");
    for (const u of users) {
      const rows = await asUser(c, u.token, "SELECT auth_jwt.jwt_claim_uuid()::text AS me, auth_jwt.jwt_claim_sub() AS sub, title FROM tasks");
      assert.deepEqual(rows, [{ me: u.uuid, sub: u.id, title: `task of ${u.email}` }]);
      await assert.rejects(
        asUser(c, u.token, "INSERT INTO tasks (user_id, title) VALUES ($1, 'planted')", [users.find((o) => o !== u).uuid]),
        /row-level security/,
      );
    }
    await c.end();
    await db.end();
  });
}

test("key rotation: old tokens verify within the grace period, stop after it; deleted keys stop at once", async () => {
  // Keys rotate every 3 s and stay published for 3 s more; auth_jwt uses the same grace period.
  const { name, auth, db } = await fresh({ jwks: { rotationInterval: 3, gracePeriod: 3 }, keyGrace: 3 });
  const { cookie } = await signUp(auth, "ada@example.com");
  const c = await client(name); // one backend throughout: no restart, no manual cache step
  const t1 = await apiToken(auth, cookie);
  const kidA = decodePart(t1, 0).kid;
  assert.equal((await verify(c, t1)).sub !== undefined, true);

  await sleep(3300); // key A has expired: the next token is signed by a new key B
  const t2 = await apiToken(auth, cookie);
  const kidB = decodePart(t2, 0).kid;
  assert.notEqual(kidA, kidB, "Better Auth rotated the key");
  assert.ok((await verify(c, t2)).sub, "the new key works at once in a backend that cached the old set");
  assert.ok((await verify(c, t1)).sub, "the old key verifies within its grace period");

  // Better Auth's JWKS endpoint and auth_jwt agree on which keys exist (usable or in grace).
  const published = (await httpJwks(auth)).map((k) => k.kid).sort();
  const { rows } = await c.query("SELECT kid FROM auth_jwt.jwks_keys() WHERE status IN ('usable', 'in grace') ORDER BY kid");
  assert.deepEqual(rows.map((r) => r.kid), published);
  assert.deepEqual(published, [kidA, kidB].sort());

  await sleep(3700); // past A's expiresAt + grace (3 + 3 s after its creation), B still in grace
  assert.deepEqual(await verify(c, t1), { error: "unable to find matching signing key", code: "28000" });
  assert.ok((await verify(c, t2)).sub, "B is still in its grace period");
  const published2 = (await httpJwks(auth)).map((k) => k.kid);
  assert.ok(!published2.includes(kidA), "Better Auth stopped publishing A too");

  await db.query("DELETE FROM jwks WHERE id = $1", [kidB]);
  assert.deepEqual(await verify(c, t2), { error: "unable to find matching signing key", code: "28000" });
  await c.end();
  await db.end();
});

test("a renamed jwks table (Better Auth's schema option) is served through a view", async () => {
  const schema = {
    jwks: {
      modelName: "auth_keys",
      fields: { publicKey: "public_key", privateKey: "private_key", createdAt: "created_at", expiresAt: "expires_at" },
    },
  };
  const { name, auth, db } = await fresh({ schema });
  await db.query(`CREATE VIEW public.jwks_for_auth_jwt AS
                    SELECT id, public_key AS "publicKey", expires_at AS "expiresAt", alg, crv FROM public.auth_keys`);
  await db.query(`ALTER DATABASE ${name} SET auth_jwt.jwks_table = 'public.jwks_for_auth_jwt'`);
  const c = await client(name);
  const watched = await c.query("SELECT relation, action FROM auth_jwt.watch_key_table()");
  assert.deepEqual(watched.rows, [{ relation: "public.auth_keys", action: "trigger created" }]);
  const { cookie } = await signUp(auth, "ada@example.com");
  const token = await apiToken(auth, cookie);
  assert.ok((await verify(c, token)).sub);
  // Changes to the renamed table reach the cache through the view.
  await db.query("DELETE FROM auth_keys");
  assert.equal((await verify(c, token)).error, "unable to find matching signing key");
  await c.end();
  await db.end();
});

test('ids from advanced.database.generateId: "uuid" are compared as strings', async () => {
  const { name, auth, db } = await fresh({ generateId: "uuid" });
  const { user, cookie } = await signUp(auth, "ada@example.com");
  const token = await apiToken(auth, cookie);
  const kid = decodePart(token, 0).kid;
  assert.match(kid, /^[0-9a-f-]{36}$/);
  const c = await client(name);
  const claims = await verify(c, token);
  assert.equal(claims.sub, user.id);
  const [, payload, sig] = token.split(".");
  const header = Buffer.from(JSON.stringify({ alg: "EdDSA", kid: kid.toUpperCase() })).toString("base64url");
  assert.deepEqual(await verify(c, `${header}.${payload}.${sig}`), { error: "unable to find matching signing key", code: "28000" });
  await c.end();
  await db.end();
});
