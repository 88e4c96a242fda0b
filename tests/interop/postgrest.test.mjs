// The real Better Auth's default EdDSA token through PostgREST's per-request SQL, as the README's
// recipe configures it: the token in X-Auth-Token (PostgREST passes it untouched in
// request.headers and runs the request as db-anon-role), db-pre-request = auth_jwt.pre_request,
// auth_jwt.authenticated_role = 'authenticated'. The statements are PostgREST 16's (see
// tests/integration/test_postgrest.py for their source and the rest of the cases).

import { test, after } from "node:test";
import assert from "node:assert/strict";
import pg from "pg";
import { setup, signUp, apiToken, dropDatabase } from "./app.mjs";

const TXVARS =
  "select set_config('search_path', $1, true), set_config('role', $2, true), set_config('request.jwt.claims', $3, true), " +
  "set_config('request.method', $4, true), set_config('request.path', $5, true), set_config('request.headers', $6, true), " +
  "set_config('request.cookies', $7, true)";
const RESPONSE =
  "nullif(current_setting('response.headers', true), '') AS response_headers, " +
  "nullif(current_setting('response.status', true), '') AS response_status, '' AS response_inserted ";
const GET =
  'WITH pgrst_source AS ( SELECT "public"."tasks".* FROM "public"."tasks"    )  SELECT null::bigint AS total_result_set, ' +
  "pg_catalog.count(_postgrest_t) AS page_total, coalesce(json_agg(_postgrest_t), '[]') AS body, " +
  RESPONSE +
  "FROM ( SELECT * FROM pgrst_source ) _postgrest_t";
const POST =
  'WITH pgrst_source AS (INSERT INTO "public"."tasks"("title") SELECT "pgrst_body"."title" FROM (SELECT $1::json AS json_data) ' +
  'pgrst_payload, LATERAL (SELECT "title" FROM json_to_record(pgrst_payload.json_data) AS _("title" text) ) pgrst_body  ' +
  'RETURNING "public"."tasks".*) SELECT \'\' AS total_result_set, pg_catalog.count(_postgrest_t) AS page_total, ' +
  "array[]::text[] AS header, coalesce(json_agg(_postgrest_t), '[]') AS body, " +
  RESPONSE +
  'FROM (SELECT "tasks".* FROM "pgrst_source" AS "tasks"   ) _postgrest_t';

const dbs = [];
after(async () => {
  for (const name of dbs) await dropDatabase(name);
});

/** One PostgREST transaction on connection `c` (as authenticator): [rows of the main query, the
 *  role it ran as], or the database error. */
async function request(c, method, path, token, sql, params = []) {
  await c.query(`BEGIN ISOLATION LEVEL READ COMMITTED ${method === "GET" ? "READ ONLY" : "READ WRITE"}`);
  try {
    const headers = JSON.stringify({
      host: "api.example.com",
      accept: "application/json",
      ...(token ? { "x-auth-token": `Bearer ${token}` } : {}),
    });
    await c.query(TXVARS, ['"public", "public"', "anon", '{"role":"anon"}', method, path, headers, "{}"]);
    await c.query('select "auth_jwt"."pre_request"()');
    const role = (await c.query("SELECT current_user AS r")).rows[0].r;
    const { rows } = await c.query(sql, params);
    await c.query("COMMIT");
    return [rows[0].body, role];
  } catch (e) {
    await c.query("ABORT");
    return { code: e.code, error: e.message };
  }
}

test("a Better Auth user's default EdDSA token reads and writes through PostgREST as authenticated", async () => {
  const name = `interop_postgrest_${process.pid}`;
  dbs.push(name);
  const { auth, db } = await setup(name, { payload: "default" });
  await db.query(`ALTER DATABASE ${name} SET auth_jwt.token_header = 'x-auth-token'`);
  await db.query(`ALTER DATABASE ${name} SET auth_jwt.authenticated_role = 'authenticated'`);
  const { user, cookie } = await signUp(auth, "rest@example.com");
  const token = await apiToken(auth, cookie);
  const c = new pg.Client({ host: process.env.PGHOST, port: Number(process.env.PGPORT), user: "authenticator", database: name });
  await c.connect();
  try {
    const [created, role] = await request(c, "POST", "/tasks", token, POST, [JSON.stringify({ title: "from PostgREST" })]);
    assert.equal(role, "authenticated");
    const { rows } = await db.query('SELECT uuid::text FROM "user" WHERE id = $1', [user.id]);
    assert.equal(created[0].user_id, rows[0].uuid, "user_id from the token's uuid claim");
    const [listed] = await request(c, "GET", "/tasks", token, GET);
    assert.deepEqual(listed.map((t) => t.title), ["from PostgREST"]);
    // Without the token: anon, nothing visible, and no write.
    const [anonRows, anonRole] = await request(c, "GET", "/tasks", null, GET);
    assert.deepEqual([anonRows, anonRole], [[], "anon"]);
    const refused = await request(c, "POST", "/tasks", null, POST, [JSON.stringify({ title: "anonymous" })]);
    assert.equal(refused.code, "42501", "anon may not insert (PostgREST: 401)");
  } finally {
    await c.end();
    await db.end();
  }
});
