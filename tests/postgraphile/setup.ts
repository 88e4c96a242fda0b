// A throwaway database with the repository's example schema, as its README builds it: Better
// Auth's own migration (the real better-auth, jwt() plugin, the uuid claim), then
// sql/example_app.sql (auth_jwt, tasks, roles, RLS policies) and the issuer/audience settings.
// PGHOST (a socket directory) and PGPORT point at a cluster with auth_jwt; superuser postgres.
import { randomBytes, randomUUID } from "node:crypto";
import { readFile } from "node:fs/promises";
import { betterAuth, type BetterAuthOptions } from "better-auth";
import { getMigrations } from "better-auth/db/migration";
import { jwt } from "better-auth/plugins";
import pg from "pg";

export const BASE_URL = "http://localhost:3000";
const EXAMPLE_APP_SQL = new URL("../../sql/example_app.sql", import.meta.url);

export interface User {
  email: string;
  uuid: string;
  token: string;
}

export function pool(database: string, user: string, max = 4): pg.Pool {
  return new pg.Pool({ host: process.env.PGHOST, port: Number(process.env.PGPORT), user, database, max });
}

async function admin(sql: string): Promise<void> {
  const c = new pg.Client({
    host: process.env.PGHOST,
    port: Number(process.env.PGPORT),
    user: "postgres",
    database: "postgres",
  });
  await c.connect();
  try {
    await c.query(sql);
  } finally {
    await c.end();
  }
}

function authOptions(database: pg.Pool, expirationTime: string) {
  return {
    database,
    baseURL: BASE_URL,
    secret: "postgraphile-test-secret-postgraphile-test-secret",
    emailAndPassword: { enabled: true },
    user: {
      additionalFields: { uuid: { type: "string", required: false, input: false, defaultValue: () => randomUUID() } },
    },
    plugins: [jwt({ jwt: { expirationTime, definePayload: ({ user }) => ({ uuid: user.uuid }) } })],
  } satisfies BetterAuthOptions;
}

export async function createDatabase() {
  const name = `postgraphile_${randomBytes(6).toString("hex")}`;
  if (!process.env.PGHOST || !process.env.PGPORT) throw new Error("set PGHOST (socket directory) and PGPORT");
  await admin(`create database ${name}`);
  const owner = pool(name, "postgres");
  await (await getMigrations(authOptions(owner, "15m"))).runMigrations();
  await owner.query("set client_min_messages = warning");
  await owner.query(await readFile(EXAMPLE_APP_SQL, "utf8"));
  await owner.query(`alter database ${name} set auth_jwt.issuer = '${BASE_URL}'`);
  await owner.query(`alter database ${name} set auth_jwt.audience = '${BASE_URL}'`);
  // No clock-skew allowance, so a 2-second token is expired 2 seconds later.
  await owner.query(`alter database ${name} set auth_jwt.leeway = 0`);

  /** Sign up with the real Better Auth and take a token from its getToken endpoint. */
  async function signUp(email: string, expirationTime = "15m"): Promise<User> {
    const auth = betterAuth(authOptions(owner, expirationTime));
    const { headers, response } = await auth.api.signUpEmail({
      body: { email, password: "correct horse battery staple", name: email.split("@")[0] },
      returnHeaders: true,
    });
    const cookie = headers
      .getSetCookie()
      .map((c) => c.split(";")[0])
      .join("; ");
    const { token } = await auth.api.getToken({ headers: new Headers({ cookie }) });
    const { rows } = await owner.query<{ uuid: string }>('select uuid::text from "user" where id = $1', [
      response.user.id,
    ]);
    return { email, uuid: rows[0].uuid, token };
  }

  return {
    name,
    owner,
    signUp,
    async drop() {
      await owner.end();
      await admin(`drop database if exists ${name} with (force)`);
    },
  };
}
