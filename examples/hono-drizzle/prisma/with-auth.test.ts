// The Prisma helper against the example's database (../test/world.ts: Drizzle migrations, users
// and tokens from the app's own Better Auth).
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { PrismaPg } from "@prisma/adapter-pg";
import pg from "pg";
import { createWorld, type User, type World } from "../test/world.ts";
import { PrismaClient } from "./generated/client.ts";
import { tokenRefusal, withAuth } from "./with-auth.ts";

let world: World;
let users: User[];
let pool: pg.Pool;
let prisma: PrismaClient;
before(async () => {
  world = await createWorld();
  users = [];
  for (let i = 0; i < 20; i++) users.push(await world.signUp(`prisma${i}@example.com`));
  // The API's login role, on a small pool.
  pool = new pg.Pool({
    host: process.env.PGHOST,
    port: Number(process.env.PGPORT),
    user: "authenticator",
    database: world.name,
    max: 3,
  });
  prisma = new PrismaClient({ adapter: new PrismaPg(pool) });
});
after(async () => {
  await prisma?.$disconnect();
  await pool?.end();
  await world?.close();
});

test("two users see and change only their own tasks", async () => {
  const [a, b] = users;
  const asA = prisma.$extends(withAuth(a.token));
  const asB = prisma.$extends(withAuth(b.token));
  // user_id defaults to auth_jwt.jwt_claim_uuid(): the caller.
  const aTask = await asA.task.create({ data: { title: "a's" } });
  const bTask = await asB.task.create({ data: { title: "b's" } });
  assert.equal(aTask.userId, a.uuid);
  assert.deepEqual(await asA.task.findMany(), [aTask]);
  assert.deepEqual(await asB.task.findMany(), [bTask]);
  assert.equal(await asB.task.findUnique({ where: { id: aTask.id } }), null);
  assert.equal((await asB.task.updateMany({ where: { id: aTask.id }, data: { title: "hijacked" } })).count, 0);
  assert.equal((await asB.task.deleteMany({ where: { id: aTask.id } })).count, 0);
  await assert.rejects(asB.task.create({ data: { title: "planted", userId: a.uuid } }), /row-level security/);
  assert.deepEqual(await asA.task.findMany(), [aTask], "a's task is untouched");
  assert.equal(await prisma.$extends(withAuth(b.token)).task.count(), 1);
});

test("a forged or malformed token fails the query with auth_jwt's reason", async () => {
  const refusal = (token: string) =>
    prisma
      .$extends(withAuth(token))
      .task.findMany()
      .then(
        () => assert.fail("the query should have failed"),
        (e: unknown) => tokenRefusal(e),
      );
  const [header, , signature] = users[2].token.split(".");
  assert.equal(await refusal(`${header}.${users[3].token.split(".")[1]}.${signature}`), "invalid token signature");
  assert.equal(await refusal("not-a-jwt"), "malformed token");
});

test("users in parallel on a pool of 3 never see each other's rows", async () => {
  const results = await Promise.all(
    users.slice(4).map(async (u) => {
      const asU = prisma.$extends(withAuth(u.token));
      await asU.task.create({ data: { title: u.email } });
      return { u, rows: await asU.task.findMany() };
    }),
  );
  for (const { u, rows } of results)
    assert.deepEqual(
      rows.map((t) => [t.userId, t.title]),
      [[u.uuid, u.email]],
    );
  // Back in the pool, every connection is the bare login role again.
  const { rows } = await pool.query("select current_user as role, current_setting('auth_jwt.token', true) as token");
  assert.deepEqual(rows, [{ role: "authenticator", token: "" }]);
});
