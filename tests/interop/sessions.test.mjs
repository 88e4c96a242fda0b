// Sign-out enforced in the database (auth_jwt.require_session) with the real Better Auth: tokens
// carry sid = session.id (jwt.definePayload), and signOut, revokeSession, revokeOtherSessions,
// revokeSessions and the admin plugin's banUser refuse the token at the next transaction, on a
// connection that stays open (caches warm), while the user's other sessions keep working.

import { test, after } from "node:test";
import assert from "node:assert/strict";
import pg from "pg";
import { admin } from "better-auth/plugins";
import { setup, signUp, signIn, apiToken, decodePart, dropDatabase } from "./app.mjs";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const dbs = [];
const pools = [];
let n = 0;
after(async () => {
  for (const p of pools) await p.end();
  for (const name of dbs) await dropDatabase(name);
});

/** A Better Auth database with require_session on (session_table as given), and one backend
 *  connected as the API's login role would be, opened after the setting so it applies. */
async function fresh(opts = {}, { require = true, sessionTable } = {}) {
  const name = `interop_s_${process.pid}_${n++}`;
  dbs.push(name);
  const ctx = await setup(name, opts);
  pools.push(ctx.db);
  if (require) await ctx.db.query(`ALTER DATABASE ${name} SET auth_jwt.require_session = on`);
  if (sessionTable) await ctx.db.query(`ALTER DATABASE ${name} SET auth_jwt.session_table = '${sessionTable}'`);
  const c = new pg.Client({ host: process.env.PGHOST, port: Number(process.env.PGPORT), user: "authenticator", database: name });
  await c.connect();
  return { name, c, ...ctx };
}

/** One PostgREST-style transaction: the caller's Better Auth user id, or the refusal. */
async function whoami(c, token) {
  await c.query("BEGIN");
  try {
    await c.query("SET LOCAL ROLE authenticated");
    await c.query("SELECT set_config('auth_jwt.token', $1, true)", [`Bearer ${token}`]);
    return (await c.query("SELECT auth_jwt.jwt_claim_sub() AS sub")).rows[0].sub;
  } catch (e) {
    return { code: e.code, error: e.message, hint: e.hint };
  } finally {
    await c.query("ROLLBACK");
  }
}

const ended = { code: "28000", error: "session has ended" };
const refused = (r, want) => assert.deepEqual({ code: r.code, error: r.error }, want, JSON.stringify(r));

test("signOut refuses the token at the next transaction; the user's other session keeps working", async () => {
  const { c, auth, db } = await fresh();
  const { user, cookie } = await signUp(auth, "ada@example.com");
  const other = await signIn(auth, "ada@example.com");
  const [t1, t2] = [await apiToken(auth, cookie), await apiToken(auth, other)];
  const sid = decodePart(t1, 1).sid;
  const { rows } = await db.query('SELECT "userId" FROM session WHERE id = $1', [sid]);
  assert.equal(rows[0].userId, user.id, "sid is the id of the session the token was issued for");
  const watched = await db.query("SELECT action FROM auth_jwt.watch_session_table()");
  assert.equal(watched.rows[0].action, "already watched", "CREATE EXTENSION after Better Auth's migrations watched it");
  assert.equal(await whoami(c, t1), user.id);
  assert.equal(await whoami(c, t2), user.id);
  await auth.api.signOut({ headers: new Headers({ cookie }) });
  const r = await whoami(c, t1);
  refused(r, ended);
  assert.match(r.hint, /sign in again/);
  assert.equal(await whoami(c, t2), user.id);
  await c.end();
});

test("revokeSession, revokeOtherSessions and revokeSessions each refuse exactly the revoked sessions' tokens", async () => {
  const { c, auth } = await fresh();
  const { user, cookie: a } = await signUp(auth, "grace@example.com");
  const [b, cc] = [await signIn(auth, "grace@example.com"), await signIn(auth, "grace@example.com")];
  const [ta, tb, tc] = [await apiToken(auth, a), await apiToken(auth, b), await apiToken(auth, cc)];
  for (const t of [ta, tb, tc]) assert.equal(await whoami(c, t), user.id);

  const sessions = await auth.api.listSessions({ headers: new Headers({ cookie: a }) });
  const sb = sessions.find((s) => s.id === decodePart(tb, 1).sid);
  await auth.api.revokeSession({ headers: new Headers({ cookie: a }), body: { token: sb.token } });
  refused(await whoami(c, tb), ended);
  assert.equal(await whoami(c, ta), user.id);
  assert.equal(await whoami(c, tc), user.id);

  await auth.api.revokeOtherSessions({ headers: new Headers({ cookie: a }) });
  refused(await whoami(c, tc), ended);
  assert.equal(await whoami(c, ta), user.id);

  const d = await signIn(auth, "grace@example.com");
  const td = await apiToken(auth, d);
  assert.equal(await whoami(c, td), user.id);
  await auth.api.revokeSessions({ headers: new Headers({ cookie: a }) });
  refused(await whoami(c, ta), ended);
  refused(await whoami(c, td), ended);
  await c.end();
});

test("the admin plugin's banUser ends every session of the user, and their tokens with them", async () => {
  const { c, auth, db } = await fresh({ plugins: [admin()] });
  const root = await signUp(auth, "root@example.com");
  await db.query(`UPDATE "user" SET role = 'admin' WHERE id = $1`, [root.user.id]);
  const { user, cookie } = await signUp(auth, "mallory@example.com");
  const tokens = [await apiToken(auth, cookie), await apiToken(auth, await signIn(auth, "mallory@example.com"))];
  const bystander = await apiToken(auth, root.cookie);
  for (const t of tokens) assert.equal(await whoami(c, t), user.id);
  await auth.api.banUser({ headers: new Headers({ cookie: root.cookie }), body: { userId: user.id } });
  for (const t of tokens) refused(await whoami(c, t), ended);
  assert.equal(await whoami(c, bystander), root.user.id);
  await c.end();
});

test("a session past its expiresAt refuses its token before the token's own exp", async () => {
  const { c, auth } = await fresh({ session: { expiresIn: 2 } });
  const { user, cookie } = await signUp(auth, "ephemeral@example.com");
  const token = await apiToken(auth, cookie);
  assert.equal(await whoami(c, token), user.id);
  assert.ok(decodePart(token, 1).exp - Date.now() / 1000 > 600, "the token itself is good for 15 minutes");
  await sleep(2500);
  refused(await whoami(c, token), { code: "28000", error: "session has expired" });
  await c.end();
});

test("secondaryStorage with preserveSessionInDatabase: sign-out ends the kept row, and the token with it", async () => {
  const store = new Map();
  const secondaryStorage = {
    get: async (k) => store.get(k) ?? null,
    set: async (k, v) => void store.set(k, v),
    delete: async (k) => void store.delete(k),
  };
  const opts = { extra: { secondaryStorage }, session: { storeSessionInDatabase: true, preserveSessionInDatabase: true } };
  const { c, auth, db } = await fresh(opts);
  const { user, cookie } = await signUp(auth, "kept@example.com");
  const token = await apiToken(auth, cookie);
  assert.equal(await whoami(c, token), user.id);
  await auth.api.signOut({ headers: new Headers({ cookie }) });
  const { rows } = await db.query("SELECT count(*)::int AS n FROM session WHERE id = $1", [decodePart(token, 1).sid]);
  assert.equal(rows[0].n, 1, "Better Auth kept the row (expiresAt set to now)");
  refused(await whoami(c, token), { code: "28000", error: "session has expired" });
  await c.end();
});

test("a renamed session table (Better Auth's modelName and fields) is served through a view", async () => {
  const opts = { session: { modelName: "auth_sessions", fields: { userId: "owner_id", expiresAt: "ends_at" } } };
  const { c, auth, db } = await fresh(opts, { sessionTable: "public.sessions_for_auth_jwt" });
  await db.query(
    `CREATE VIEW public.sessions_for_auth_jwt AS SELECT id, owner_id AS "userId", ends_at AS "expiresAt" FROM auth_sessions`,
  );
  const { user, cookie } = await signUp(auth, "renamed@example.com");
  const token = await apiToken(auth, cookie);
  assert.equal(await whoami(c, token), user.id);
  await auth.api.signOut({ headers: new Headers({ cookie }) });
  refused(await whoami(c, token), ended);
  await c.end();
});

test("Better Auth's default payload has no sid: refused with a hint that shows the definePayload line", async () => {
  const { c, auth } = await fresh({ payload: "default" });
  const { cookie } = await signUp(auth, "nosid@example.com");
  const r = await whoami(c, await apiToken(auth, cookie));
  refused(r, { code: "28000", error: "token has no session id" });
  assert.match(r.hint, /sid: session\.id/);
  await c.end();
});

test("with require_session off (the default) nothing changes: a signed-out token verifies until its exp", async () => {
  const { c, auth, db } = await fresh({}, { require: false });
  const { user, cookie } = await signUp(auth, "classic@example.com");
  const token = await apiToken(auth, cookie);
  await auth.api.signOut({ headers: new Headers({ cookie }) });
  assert.equal(await whoami(c, token), user.id);
  await db.query("GRANT EXECUTE ON FUNCTION auth_jwt.stats() TO authenticator"); // the operators' grant
  const { rows } = await c.query("SELECT session_lookups FROM auth_jwt.stats()");
  assert.equal(Number(rows[0].session_lookups), 0);
  await c.end();
});
