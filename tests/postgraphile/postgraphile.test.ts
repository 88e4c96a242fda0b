// PostGraphile 5 serving the example schema over HTTP, each request's Authorization header passed
// to PostgreSQL as auth_jwt.token (graphile.config.ts), tokens from the real Better Auth.
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, test } from "node:test";
import type pg from "pg";
import { postgraphile, type PostGraphileInstance } from "postgraphile";
import { grafserv } from "postgraphile/grafserv/node";
import { makePreset } from "./graphile.config.ts";
import { createDatabase, pool, type User } from "./setup.ts";

let db: Awaited<ReturnType<typeof createDatabase>>;
let api: pg.Pool;
let pgl: PostGraphileInstance;
let server: Server;
let endpoint: string;
let users: User[];

before(async () => {
  db = await createDatabase();
  users = [];
  for (let i = 0; i < 32; i++) users.push(await db.signUp(`user${i}@example.com`));
  api = pool(db.name, "authenticator", 4); // shared by every request
  pgl = postgraphile(makePreset(api));
  server = createServer();
  pgl.createServ(grafserv).addTo(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}/graphql`;
});

after(async () => {
  if (server) await new Promise((resolve) => server.close(resolve));
  await pgl?.release();
  await api?.end();
  await db?.drop();
});

interface Task {
  rowId: string;
  userId: string;
  title: string;
}
interface Result {
  data?: Record<string, any> | null;
  errors?: { message: string; extensions?: Record<string, unknown> }[];
}

/** POST a GraphQL request as `as`: a user (their token), an Authorization header, or nobody. */
async function gql(query: string, variables: object = {}, as?: User | string): Promise<Result & { text: string }> {
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (as) headers.authorization = typeof as === "string" ? as : `Bearer ${as.token}`;
  const res = await fetch(endpoint, { method: "POST", headers, body: JSON.stringify({ query, variables }) });
  const text = await res.text();
  return { ...(JSON.parse(text) as Result), text };
}

const TASK = "rowId userId title";
const list = async (as?: User | string): Promise<Task[]> => {
  const r = await gql(`{ allTasks { nodes { ${TASK} } } }`, {}, as);
  assert.equal(r.errors, undefined, r.text);
  // Only indexed columns are orderable in PostGraphile's schema: sort here.
  return (r.data!.allTasks.nodes as Task[]).sort((x, y) => x.title.localeCompare(y.title));
};
const create = async (as: User, title: string): Promise<Task> => {
  const r = await gql(
    `mutation($title: String!) { createTask(input: { task: { title: $title } }) { task { ${TASK} } } }`,
    { title },
    as,
  );
  assert.equal(r.errors, undefined, r.text);
  return r.data!.createTask.task;
};
const count = async () => Number((await db.owner.query("select count(*) from tasks")).rows[0].count);

test("only the tasks table is exposed, not Better Auth's", async () => {
  const r = await gql("{ __schema { types { name } } }");
  const names = r.data!.__schema.types.map((t: { name: string }) => t.name);
  assert.ok(names.includes("Task"));
  for (const hidden of ["User", "Session", "Account", "Verification", "Jwk", "Jwks"])
    assert.ok(!names.includes(hidden), hidden);
});

test("two users see and mutate only their own tasks", async () => {
  const [a, b] = users;
  const aTask = await create(a, "a's");
  const bTask = await create(b, "b's");
  assert.equal(aTask.userId, a.uuid, "user_id defaults to the token's uuid");
  assert.deepEqual(await list(a), [aTask]);
  assert.deepEqual(await list(b), [bTask]);

  const byId = await gql(`query($id: UUID!) { taskByRowId(rowId: $id) { ${TASK} } }`, { id: aTask.rowId }, b);
  assert.equal(byId.data!.taskByRowId, null);
  for (const mutation of [
    `mutation($id: UUID!) { updateTaskByRowId(input: { rowId: $id, taskPatch: { title: "hijacked" } }) { task { ${TASK} } } }`,
    `mutation($id: UUID!) { deleteTaskByRowId(input: { rowId: $id }) { task { ${TASK} } } }`,
  ]) {
    // RLS hides the row: no task comes back (and a's is checked untouched below).
    const r = await gql(mutation, { id: aTask.rowId }, b);
    assert.equal(Object.values(r.data ?? {})[0]?.task ?? null, null, r.text);
  }
  const planted = await gql(
    `mutation($user: UUID!) { createTask(input: { task: { title: "planted", userId: $user } }) { task { ${TASK} } } }`,
    { user: a.uuid },
    b,
  );
  assert.ok(planted.errors?.length, planted.text);
  assert.equal(planted.data?.createTask ?? null, null);

  const updated = await gql(
    `mutation($id: UUID!) { updateTaskByRowId(input: { rowId: $id, taskPatch: { title: "b's, edited" } }) { task { ${TASK} } } }`,
    { id: bTask.rowId },
    b,
  );
  assert.equal(updated.data!.updateTaskByRowId.task.title, "b's, edited", updated.text);
  assert.deepEqual(await list(a), [aTask], "a's task is untouched");
  assert.deepEqual(
    (await list(b)).map((t) => t.title),
    ["b's, edited"],
  );
});

test("an invalid or expired token gets a GraphQL error that says why, and no data", async () => {
  const [u, other] = [users[2], users[3]];
  await create(u, "u's");
  const [header, , signature] = u.token.split(".");
  const cases: [string, string][] = [
    [`Bearer ${header}.${other.token.split(".")[1]}.${signature}`, "invalid token signature"],
    ["Bearer not-a-jwt", "malformed token"],
  ];
  const short = await db.signUp("short@example.com", "2s");
  await create(short, "short's");
  const exp = JSON.parse(Buffer.from(short.token.split(".")[1], "base64url").toString()).exp;
  await new Promise((r) => setTimeout(r, exp * 1000 - Date.now() + 100));
  cases.push([`Bearer ${short.token}`, "token has expired"]);

  for (const [authorization, reason] of cases) {
    const before = await count();
    for (const query of [
      `{ allTasks { nodes { ${TASK} } } }`,
      `mutation { createTask(input: { task: { title: "sneaky" } }) { task { ${TASK} } } }`,
    ]) {
      const r = await gql(query, {}, authorization);
      assert.equal(r.errors?.[0]?.message, reason, r.text);
      assert.equal(r.errors?.[0]?.extensions?.code, "UNAUTHENTICATED");
      assert.deepEqual(Object.values(r.data ?? {}), [null], `no data: ${r.text}`);
      for (const part of authorization.slice(7).split(".")) assert.ok(!r.text.includes(part), "never echoes the token");
    }
    assert.equal(await count(), before, "nothing was created");
  }
});

test("without a token, nothing is visible and nothing can be written", async () => {
  await create(users[4], "someone's");
  assert.ok((await count()) > 0);
  assert.deepEqual(await list(), []);
  const r = await gql(`mutation { createTask(input: { task: { title: "anonymous" } }) { task { ${TASK} } } }`);
  assert.ok(r.errors?.length, r.text);
  assert.equal((await db.owner.query("select count(*) from tasks where title = 'anonymous'")).rows[0].count, "0");
});

test("concurrent users on a shared pool of 4 never see each other's rows", async () => {
  const crowd = users.slice(5);
  const results = await Promise.all(
    crowd.map(async (u) => {
      await create(u, `${u.email} #1`);
      await create(u, `${u.email} #2`);
      return { u, rows: await list(u) };
    }),
  );
  for (const { u, rows } of results) {
    assert.deepEqual(
      rows.map((t) => [t.userId, t.title]),
      [
        [u.uuid, `${u.email} #1`],
        [u.uuid, `${u.email} #2`],
      ],
    );
  }
  // Every connection went back to the pool as the bare login role, without a token.
  const clients = await Promise.all([1, 2, 3, 4].map(() => api.connect()));
  try {
    for (const c of clients) {
      const { rows } = await c.query("select current_user as role, current_setting('auth_jwt.token', true) as token");
      assert.deepEqual(rows, [{ role: "authenticator", token: "" }]);
    }
  } finally {
    for (const c of clients) c.release();
  }
});
