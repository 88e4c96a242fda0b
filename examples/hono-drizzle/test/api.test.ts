// The tasks API end to end: tokens from the app's own Better Auth, PostgreSQL with auth_jwt, RLS
// declared in Drizzle. Mirrors examples/fastapi/tests.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { generateKeyPairSync, sign } from "node:crypto";
import { cp, mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { relative } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { createAuth } from "../src/auth.ts";
import { BASE_URL, FRONTEND, createWorld, type User, type World } from "./world.ts";

let world: World;
let users: User[];
before(async () => {
  world = await createWorld();
  users = [];
  for (let i = 0; i < 52; i++) users.push(await world.signUp(`user${i}@example.com`));
});
after(() => world?.close());

type Task = { id: string; user_id: string; title: string; completed: boolean; created_at: string; updated_at: string };

/** A request to the app as `user` (or with the given Authorization header). */
function call(method: string, path: string, as?: User | string, body?: unknown, api = world.api) {
  const headers: Record<string, string> = {};
  if (as) headers.authorization = typeof as === "string" ? as : `Bearer ${as.token}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  return api.request(`${BASE_URL}${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
}

async function json<T = any>(res: Response | Promise<Response>, status: number): Promise<T> {
  const r = await res;
  const text = await r.text();
  assert.equal(r.status, status, text);
  return JSON.parse(text) as T;
}

const claims = (token: string) => JSON.parse(Buffer.from(token.split(".")[1], "base64url").toString());
const kid = (token: string): string => JSON.parse(Buffer.from(token.split(".")[0], "base64url").toString()).kid;

/** A token signed with a key the attacker made up, under a real key id. */
function forge(payload: object, keyId: string): string {
  const { privateKey } = generateKeyPairSync("ed25519");
  const part = (o: object) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const input = `${part({ alg: "EdDSA", kid: keyId })}.${part(payload)}`;
  return `${input}.${sign(null, Buffer.from(input), privateKey).toString("base64url")}`;
}

test("the token carries the user's uuid, which is the path's user", () => {
  const [u] = users;
  assert.match(u.uuid, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  assert.equal(claims(u.token).uuid, u.uuid);
  assert.equal(claims(u.token).iss, BASE_URL);
});

test("create, read, update and delete a task", async () => {
  const u = users[0];
  const base = `/api/${u.uuid}/tasks`;
  assert.deepEqual(await json(call("GET", base, u), 200), []);
  const task = await json<Task>(call("POST", base, u, { title: "write tests" }), 201);
  assert.equal(task.user_id, u.uuid);
  assert.equal(task.completed, false);
  assert.equal((await json<Task>(call("GET", `${base}/${task.id}`, u), 200)).title, "write tests");
  const done = await json<Task>(call("PATCH", `${base}/${task.id}`, u, { completed: true }), 200);
  assert.equal(done.completed, true);
  assert.equal(done.title, "write tests");
  assert.ok(done.updated_at >= task.updated_at);
  assert.deepEqual(
    (await json<Task[]>(call("GET", base, u), 200)).map((t) => t.id),
    [task.id],
  );
  assert.equal((await call("DELETE", `${base}/${task.id}`, u)).status, 204);
  assert.equal((await call("GET", `${base}/${task.id}`, u)).status, 404);
  assert.deepEqual(await json(call("GET", base, u), 200), []);
});

test("two users are isolated on every route", async () => {
  const [a, b] = [users[1], users[2]];
  const aTask = await json<Task>(call("POST", `/api/${a.uuid}/tasks`, a, { title: "a's" }), 201);
  const bTask = await json<Task>(call("POST", `/api/${b.uuid}/tasks`, b, { title: "b's" }), 201);

  // b's token on a's path: 403, whatever the route.
  for (const [method, path, body] of [
    ["GET", `/api/${a.uuid}/tasks`],
    ["POST", `/api/${a.uuid}/tasks`, { title: "planted" }],
    ["GET", `/api/${a.uuid}/tasks/${aTask.id}`],
    ["PATCH", `/api/${a.uuid}/tasks/${aTask.id}`, { title: "hijacked" }],
    ["DELETE", `/api/${a.uuid}/tasks/${aTask.id}`],
  ] as const) {
    const res = await call(method, path, b, body);
    assert.equal(res.status, 403, `${method} ${path}: ${await res.text()}`);
  }
  // b's own path with a's task: RLS hides it, so it does not exist for b.
  for (const method of ["GET", "PATCH", "DELETE"]) {
    const res = await call(
      method,
      `/api/${b.uuid}/tasks/${aTask.id}`,
      b,
      method === "PATCH" ? { title: "x" } : undefined,
    );
    assert.equal(res.status, 404, `${method}: ${await res.text()}`);
  }
  // Each sees exactly their own task, untouched.
  assert.deepEqual(await json(call("GET", `/api/${a.uuid}/tasks`, a), 200), [aTask]);
  assert.deepEqual(await json(call("GET", `/api/${b.uuid}/tasks`, b), 200), [bTask]);
  assert.deepEqual(await json(call("GET", `/api/${a.uuid}/tasks/${aTask.id}`, a), 200), aTask);
});

test("a missing, malformed or forged token gets 401 with the reason, never the token", async () => {
  const [u, other] = [users[3], users[4]];
  const base = `/api/${u.uuid}/tasks`;
  await json(call("POST", base, u, { title: "mine" }), 201);

  const missing = await call("GET", base);
  assert.equal(missing.status, 401);
  assert.match(missing.headers.get("www-authenticate") ?? "", /^Bearer /);
  assert.deepEqual(await missing.json(), {
    error: "unauthorized",
    reason: "missing bearer token",
    detail: "Send Authorization: Bearer <token from Better Auth's /api/auth/token>.",
    token_endpoint: `${BASE_URL}/api/auth/token`,
  });
  assert.equal((await json(call("GET", base, "Basic dXNlcjpwYXNz"), 401)).reason, "missing bearer token");
  assert.equal((await json(call("GET", base, "Bearer "), 401)).reason, "missing bearer token");
  assert.equal((await json(call("GET", base, "Bearer not-a-jwt"), 401)).reason, "malformed token");

  const [header, , signature] = u.token.split(".");
  const forgeries: [string, string][] = [
    // another user's claims under this user's signature
    [`${header}.${other.token.split(".")[1]}.${signature}`, "invalid token signature"],
    // this user's claims signed by a key the attacker made, under Better Auth's key id
    [forge(claims(u.token), kid(u.token)), "invalid token signature"],
    // ... or under a key id of its own
    [forge(claims(u.token), "attacker-key"), "unable to find matching signing key"],
  ];
  for (const [token, reason] of forgeries) {
    const res = await call("GET", base, `Bearer ${token}`);
    const text = await res.text();
    assert.equal(res.status, 401, text);
    assert.equal(JSON.parse(text).reason, reason);
    assert.equal(JSON.parse(text).token_endpoint, `${BASE_URL}/api/auth/token`);
    for (const part of token.split(".")) assert.ok(!text.includes(part), "the answer never echoes the token");
  }
  assert.equal((await json<Task[]>(call("GET", base, u), 200)).length, 1, "the real token still works");
});

test("bad input gets 422", async () => {
  const u = users[5];
  const base = `/api/${u.uuid}/tasks`;
  const post = (body: unknown) => call("POST", base, u, body);
  for (const body of [
    {},
    { title: "" },
    { title: "x".repeat(201) },
    { title: 42 },
    { title: "ok", completed: null },
    { title: "ok", completed: "maybe" },
    { title: "ok", user_id: "00000000-0000-0000-0000-000000000000" },
    { title: "a\u0000b" },
  ]) {
    assert.equal((await post(body)).status, 422, JSON.stringify(body));
  }
  const malformed = await world.api.request(`${BASE_URL}${base}`, {
    method: "POST",
    headers: { authorization: `Bearer ${u.token}`, "content-type": "application/json" },
    body: "{",
  });
  assert.equal(malformed.status, 422);
  assert.equal((await call("GET", "/api/not-a-uuid/tasks", u)).status, 422);
  assert.equal((await call("GET", `${base}/not-a-uuid`, u)).status, 422);

  const task = await json<Task>(post({ title: "ok" }), 201);
  // 200 characters is the limit, in characters (code points), as PostgreSQL counts them.
  await json(post({ title: "🙂".repeat(200) }), 201);
  for (const body of [
    {},
    { title: null },
    { completed: null },
    { completed: "maybe" },
    { title: "\u0000" },
    { id: task.id },
  ]) {
    assert.equal((await call("PATCH", `${base}/${task.id}`, u, body)).status, 422, JSON.stringify(body));
  }
  assert.deepEqual(await json(call("GET", `${base}/${task.id}`, u), 200), task, "nothing changed");
});

test("CORS lets the frontend in, and no one else", async () => {
  const path = `${BASE_URL}/api/${users[6].uuid}/tasks`;
  const preflight = (origin: string) =>
    world.api.request(path, {
      method: "OPTIONS",
      headers: {
        origin,
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization,content-type",
      },
    });
  const ok = await preflight(FRONTEND);
  assert.equal(ok.status, 204);
  assert.equal(ok.headers.get("access-control-allow-origin"), FRONTEND);
  assert.equal(ok.headers.get("access-control-allow-credentials"), "true");
  assert.match(ok.headers.get("access-control-allow-headers") ?? "", /authorization/i);
  const evil = await preflight("https://evil.example.com");
  assert.equal(evil.headers.get("access-control-allow-origin"), null);
});

test("50 users in parallel on a pool of 5 each see exactly their own rows", async () => {
  const crowd = users.slice(0, 50);
  const results = await Promise.all(
    crowd.map(async (u) => {
      const base = `/api/${u.uuid}/tasks`;
      for (const i of [1, 2]) await json(call("POST", base, u, { title: `${u.email} #${i}` }), 201);
      return { u, rows: await json<Task[]>(call("GET", base, u), 200) };
    }),
  );
  for (const { u, rows } of results) {
    assert.ok(rows.length >= 2);
    assert.ok(
      rows.every((t) => t.user_id === u.uuid),
      `${u.email} sees only their rows`,
    );
    assert.deepEqual(
      rows.filter((t) => t.title.startsWith(`${u.email} #`)).map((t) => t.title),
      [`${u.email} #1`, `${u.email} #2`],
    );
  }
});

test("a token that expires mid-session gets 401; the token endpoint gives a fresh one", async () => {
  // The same Better Auth, issuing 2-second tokens (the database allows no clock skew in these tests).
  const shortLived = createAuth(world.authDb, { ...world.authConfig, expirationTime: "2s" });
  const { headers, response } = await shortLived.api.signUpEmail({
    body: { email: "short@example.com", password: "correct horse battery staple", name: "short" },
    returnHeaders: true,
  });
  const cookie = headers
    .getSetCookie()
    .map((c) => c.split(";")[0])
    .join("; ");
  const { token } = await shortLived.api.getToken({ headers: new Headers({ cookie }) });
  const uuid: string = (response.user as { uuid: string }).uuid;
  const u = { email: "short@example.com", uuid, token, cookie };
  const base = `/api/${uuid}/tasks`;
  await json(call("POST", base, u, { title: "before" }), 201);

  await new Promise((r) => setTimeout(r, claims(token).exp * 1000 - Date.now() + 100));
  const res = await call("GET", base, u);
  const text = await res.text();
  assert.equal(res.status, 401, text);
  const body = JSON.parse(text);
  assert.equal(body.reason, "token has expired");
  assert.ok(!text.includes(token.split(".")[2]), "the answer never echoes the token");

  // The client follows token_endpoint with its session cookie and carries on.
  const fresh = await json<{ token: string }>(world.api.request(body.token_endpoint, { headers: { cookie } }), 200);
  const rows = await json<Task[]>(call("GET", base, { ...u, token: fresh.token }), 200);
  assert.deepEqual(
    rows.map((t) => t.title),
    ["before"],
  );
});

test("signing out ends the token in the database: 401 at the next request; the user's other session keeps working", async () => {
  const u = await world.signUp("leaving@example.com");
  const other = await world.signIn(u.email);
  const base = `/api/${u.uuid}/tasks`;
  await json(call("GET", base, u), 200);
  await json(call("GET", base, { ...u, token: other.token }), 200);
  const out = await world.api.request(`${BASE_URL}/api/auth/sign-out`, {
    method: "POST",
    headers: { cookie: u.cookie, origin: FRONTEND },
  });
  assert.equal(out.status, 200, await out.text());
  const res = await call("GET", base, u);
  const text = await res.text();
  assert.equal(res.status, 401, text);
  assert.equal(JSON.parse(text).reason, "session has ended");
  assert.ok(!text.includes(u.token.split(".")[2]), "the answer never echoes the token");
  await json(call("GET", base, { ...u, token: other.token }), 200);
});

test("a pooled connection carries no identity from one request to the next", async () => {
  const pool = world.apiPool(1); // every request and check below shares one connection
  const api = world.app(pool);
  const [a, b] = [users[50], users[51]]; // not in the crowd above: b has no rows
  await json(call("POST", `/api/${a.uuid}/tasks`, a, { title: "a's secret" }, api), 201);
  const state = async () =>
    (
      await pool.query(
        "select pg_backend_pid() as pid, current_user as role, current_setting('auth_jwt.token', true) as token, auth_jwt.jwt_claim_uuid() as uuid",
      )
    ).rows[0];
  const clean = await state();
  assert.deepEqual({ ...clean, pid: 0 }, { pid: 0, role: "authenticator", token: "", uuid: null });

  const steps: [string, () => Response | Promise<Response>, number][] = [
    ["a lists", () => call("GET", `/api/${a.uuid}/tasks`, a, undefined, api), 200],
    ["b on a's path (403 inside the transaction)", () => call("GET", `/api/${a.uuid}/tasks`, b, undefined, api), 403],
    [
      "a forged token (401 inside the transaction)",
      () => call("GET", `/api/${a.uuid}/tasks`, `Bearer ${forge(claims(a.token), kid(a.token))}`, undefined, api),
      401,
    ],
    ["a creates", () => call("POST", `/api/${a.uuid}/tasks`, a, { title: "a again" }, api), 201],
  ];
  for (const [what, step, status] of steps) {
    assert.equal((await step()).status, status, what);
    assert.deepEqual(await state(), clean, `after "${what}": same connection, no role, no token`);
    // b, on the connection a just used, sees none of a's rows.
    assert.deepEqual(await json(call("GET", `/api/${b.uuid}/tasks`, b, undefined, api), 200), [], what);
  }
});

test("the API's login role alone reaches nothing, and no role reaches Better Auth's tables", async () => {
  const pool = world.apiPool(1);
  for (const table of ["tasks", '"user"', "session", "account", "jwks"]) {
    await assert.rejects(pool.query(`select 1 from ${table}`), /permission denied/, `authenticator: ${table}`);
  }
  for (const role of ["authenticated", "anon"]) {
    for (const table of ['"user"', "session", "account", "verification", "jwks"]) {
      const c = await pool.connect();
      try {
        await c.query("begin");
        await c.query(`set local role ${role}`);
        await assert.rejects(c.query(`select 1 from ${table}`), /permission denied/, `${role}: ${table}`);
      } finally {
        await c.query("rollback");
        c.release();
      }
    }
  }
});

test("auth_jwt watches Better Auth's key table: no warning in any request", () => {
  assert.deepEqual(world.warnings, []);
});

test("the migrations are what drizzle-kit generates from the schema", async () => {
  const root = fileURLToPath(new URL("..", import.meta.url));
  const out = await mkdtemp(`${tmpdir()}/drizzle-`);
  try {
    await cp(`${root}/drizzle`, out, { recursive: true });
    const before = await readdir(out);
    const { stdout } = await promisify(execFile)(
      `${root}/node_modules/.bin/drizzle-kit`,
      // drizzle-kit reads --out relative to the working directory
      ["generate", "--dialect", "postgresql", "--schema", "src/db/schema.ts", "--out", relative(root, out)],
      { cwd: root },
    );
    assert.match(stdout, /No schema changes/);
    assert.deepEqual(await readdir(out), before);
  } finally {
    await rm(out, { recursive: true, force: true });
  }
});
