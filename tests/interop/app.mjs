// A headless Better Auth app (the real npm package) on a fresh PostgreSQL database, with
// auth_jwt and the example app (sql/example_app.sql) added on top of Better Auth's own migrations.
// Shared by the interop tests and by issue-tokens.mjs (tokens for the FastAPI example's tests).

import { readFileSync } from "node:fs";
import { randomUUID } from "node:crypto";
import { fileURLToPath } from "node:url";
import { betterAuth } from "better-auth";
import { jwt } from "better-auth/plugins";
import { getMigrations } from "better-auth/db/migration";
import pg from "pg";

export const BASE_URL = "http://localhost:3000";
const ROOT = fileURLToPath(new URL("../..", import.meta.url));

export function pool(database, user = "postgres") {
  return new pg.Pool({ host: process.env.PGHOST, port: Number(process.env.PGPORT), user, database, max: 4 });
}

export async function createDatabase(name) {
  const admin = new pg.Client({ host: process.env.PGHOST, port: Number(process.env.PGPORT), user: "postgres", database: "postgres" });
  await admin.connect();
  await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
}

export async function dropDatabase(name) {
  const admin = new pg.Client({ host: process.env.PGHOST, port: Number(process.env.PGPORT), user: "postgres", database: "postgres" });
  await admin.connect();
  await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  await admin.end();
}

/** Better Auth options as an app would write them. `payload: "custom"` adds the uuid claim and
 *  the session id (sid, for auth_jwt.require_session) with jwt.definePayload; `payload: "default"`
 *  signs Better Auth's default payload (the user object, which carries the uuid additional field
 *  too, and no session id). `session` and `plugins` are passed through, `extra` is spread into the
 *  options (secondaryStorage, ...). */
export function authOptions(
  db,
  { payload = "custom", jwks = {}, schema, generateId, expirationTime = "15m", cookieCache = false, session = {}, plugins = [], extra = {} } = {},
) {
  return {
    ...extra,
    database: db,
    baseURL: BASE_URL,
    secret: "interop-test-secret-interop-test-secret-0123456789",
    emailAndPassword: { enabled: true },
    user: {
      additionalFields: {
        uuid: { type: "string", required: false, input: false, defaultValue: () => randomUUID() },
      },
    },
    ...(generateId ? { advanced: { database: { generateId } } } : {}),
    // The session cookie cache as signed JWTs, with the same keys (see algorithms.test.mjs).
    session: { ...session, ...(cookieCache ? { cookieCache: { enabled: true, strategy: "jwt" } } : {}) },
    plugins: [
      jwt({
        jwt: {
          expirationTime,
          ...(payload === "custom"
            ? {
                definePayload: ({ user, session }) => ({ uuid: user.uuid, email: user.email, name: user.name, sid: session.id }),
              }
            : {}),
        },
        jwks,
        ...(cookieCache ? { sessionCookieCache: true } : {}),
        ...(schema ? { schema } : {}),
      }),
      ...plugins,
    ],
  };
}

/** A database set up the way the README says: Better Auth's migrations, then auth_jwt and the
 *  example app as a superuser, issuer and audience = Better Auth's baseURL origin. */
export async function setup(name, opts = {}) {
  await createDatabase(name);
  const db = pool(name);
  const options = authOptions(db, opts);
  const { runMigrations } = await getMigrations(options);
  await runMigrations();
  const sql = readFileSync(`${ROOT}/sql/example_app.sql`, "utf8");
  await db.query("SET client_min_messages = warning");
  await db.query(sql);
  await db.query(`ALTER DATABASE ${name} SET auth_jwt.issuer = '${BASE_URL}'`);
  await db.query(`ALTER DATABASE ${name} SET auth_jwt.audience = '${BASE_URL}'`);
  if (opts.keyGrace !== undefined) await db.query(`ALTER DATABASE ${name} SET auth_jwt.key_grace_period = ${opts.keyGrace}`);
  const auth = betterAuth(options);
  return { auth, db, options };
}

/** Sign up with email and password; returns the user row and the session cookie. */
export async function signUp(auth, email) {
  const { headers, response } = await auth.api.signUpEmail({
    body: { email, password: "correct horse battery staple", name: email.split("@")[0] },
    returnHeaders: true,
  });
  const cookie = headers.getSetCookie().map((c) => c.split(";")[0]).join("; ");
  return { user: response.user, cookie };
}

/** Sign in again (another session of the same user); returns its session cookie. */
export async function signIn(auth, email) {
  const { headers } = await auth.api.signInEmail({
    body: { email, password: "correct horse battery staple" },
    returnHeaders: true,
  });
  return headers.getSetCookie().map((c) => c.split(";")[0]).join("; ");
}

/** A JWT for the session behind `cookie`, from auth.api.getToken. */
export async function apiToken(auth, cookie) {
  return (await auth.api.getToken({ headers: new Headers({ cookie }) })).token;
}

/** The same over HTTP: GET /api/auth/token through auth.handler. */
export async function httpToken(auth, cookie) {
  const res = await auth.handler(new Request(`${BASE_URL}/api/auth/token`, { headers: { cookie } }));
  if (res.status !== 200) throw new Error(`GET /api/auth/token: ${res.status}`);
  return (await res.json()).token;
}

export async function httpJwks(auth) {
  const res = await auth.handler(new Request(`${BASE_URL}/api/auth/jwks`));
  return (await res.json()).keys;
}

export function decodePart(token, i) {
  return JSON.parse(Buffer.from(token.split(".")[i], "base64url").toString("utf8"));
}
