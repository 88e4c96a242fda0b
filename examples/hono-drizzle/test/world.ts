// A throwaway database set up as the README says (bootstrap, drizzle-kit migrate, bootstrap), the
// app on it, and users signed up through the app's own Better Auth routes. PGHOST (a socket
// directory) and PGPORT point at a cluster with auth_jwt installed, superuser postgres, trust auth.
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { drizzle } from "drizzle-orm/node-postgres";
import pg from "pg";
import { createApp } from "../src/app.ts";
import { createAuth, type AuthConfig } from "../src/auth.ts";
import { bootstrap } from "../src/db/bootstrap.ts";

export const BASE_URL = "http://localhost:3000";
export const FRONTEND = "http://localhost:5173";
const ROOT = fileURLToPath(new URL("..", import.meta.url));

export interface User {
  email: string;
  uuid: string;
  token: string;
  /** The Better Auth session cookie the token was issued for. */
  cookie: string;
}

function url(user: string, database: string): string {
  const { PGHOST, PGPORT } = process.env;
  if (!PGHOST || !PGPORT) throw new Error("set PGHOST (socket directory) and PGPORT");
  return `postgresql://${user}@/${database}?host=${encodeURIComponent(PGHOST)}&port=${PGPORT}`;
}

async function asAdmin<T>(database: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: url("postgres", database) });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

export async function createWorld() {
  const name = `hono_drizzle_${randomBytes(6).toString("hex")}`;
  await asAdmin("postgres", (c) => c.query(`create database ${name}`));
  // The tests own the tables as postgres; a real deployment uses a non-superuser owner.
  const ownerUrl = url("postgres", name);
  await asAdmin(name, async (c) => {
    await bootstrap(c, BASE_URL);
    // No clock-skew allowance, so a 2-second token is expired 2 seconds later.
    await c.query(`alter database ${name} set auth_jwt.leeway = 0`);
  });
  await promisify(execFile)(`${ROOT}/node_modules/.bin/drizzle-kit`, ["migrate"], {
    cwd: ROOT,
    env: { ...process.env, AUTH_DATABASE_URL: ownerUrl },
  });
  await asAdmin(name, (c) => bootstrap(c, BASE_URL));

  const pools: pg.Pool[] = [];
  const warnings: string[] = [];
  /** A pool of the API's login role; records every notice PostgreSQL sends it. */
  const apiPool = (max: number) => {
    const pool = new pg.Pool({ connectionString: url("authenticator", name), max });
    pool.on("connect", (client) => client.on("notice", (n) => warnings.push(`${n.severity}: ${n.message}`)));
    pools.push(pool);
    return pool;
  };
  const authPool = new pg.Pool({ connectionString: ownerUrl, max: 4 });
  pools.push(authPool);
  const authConfig: AuthConfig = {
    baseURL: BASE_URL,
    secret: "test-secret-test-secret-test-secret-0123456789",
    trustedOrigins: [FRONTEND],
  };
  const authDb = drizzle(authPool);
  const auth = createAuth(authDb, authConfig);
  const app = (pool: pg.Pool) =>
    createApp({ db: drizzle(pool), auth, betterAuthUrl: BASE_URL, frontendOrigins: [FRONTEND] });
  // The app as the tests use it: a small pool, shared by every request.
  const api = app(apiPool(5));

  /** Sign up over HTTP, then GET /api/auth/token with the session cookie, as a frontend does. */
  async function signUp(email: string): Promise<User> {
    const res = await api.request(`${BASE_URL}/api/auth/sign-up/email`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ email, password: "correct horse battery staple", name: email.split("@")[0] }),
    });
    if (res.status !== 200) throw new Error(`sign-up: ${res.status} ${await res.text()}`);
    const { user } = (await res.json()) as { user: { uuid: string } };
    const cookie = res.headers
      .getSetCookie()
      .map((c) => c.split(";")[0])
      .join("; ");
    return { email, uuid: user.uuid, token: await freshToken(cookie), cookie };
  }

  /** Sign in over HTTP (another session of the same user); its cookie and token. */
  async function signIn(email: string): Promise<{ cookie: string; token: string }> {
    const res = await api.request(`${BASE_URL}/api/auth/sign-in/email`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ email, password: "correct horse battery staple" }),
    });
    if (res.status !== 200) throw new Error(`sign-in: ${res.status} ${await res.text()}`);
    const cookie = res.headers
      .getSetCookie()
      .map((c) => c.split(";")[0])
      .join("; ");
    return { cookie, token: await freshToken(cookie) };
  }

  async function freshToken(cookie: string): Promise<string> {
    const res = await api.request(`${BASE_URL}/api/auth/token`, { headers: { cookie } });
    if (res.status !== 200) throw new Error(`token: ${res.status}`);
    return ((await res.json()) as { token: string }).token;
  }

  return {
    name,
    authConfig,
    authDb,
    api,
    app,
    apiPool,
    signUp,
    signIn,
    warnings,
    async close() {
      await Promise.all(pools.map((p) => p.end()));
      // pool.end() resolves before its clients' connections have closed. Dropping WITH (FORCE)
      // at once could terminate one mid-goodbye: an error no listener handles, which fails the
      // test run. Wait (up to 5 s) until they are gone; FORCE is then only a last resort.
      await asAdmin("postgres", async (c) => {
        for (let i = 0; i < 100; i++) {
          const { rows } = await c.query("select count(*)::int as n from pg_stat_activity where datname = $1", [name]);
          if (rows[0].n === 0) break;
          await new Promise((r) => setTimeout(r, 50));
        }
        await c.query(`drop database if exists ${name} with (force)`);
      });
    },
  };
}

export type World = Awaited<ReturnType<typeof createWorld>>;
