// Better Auth in the same app and database: email and password sign-in, and the jwt() plugin,
// whose tokens carry the user's uuid for the database to verify (auth_jwt) and RLS to use, and
// the session id, so that signing out ends the token in the database too.
import { betterAuth } from "better-auth";
import { drizzleAdapter } from "better-auth/adapters/drizzle";
import { jwt } from "better-auth/plugins";
import type { NodePgDatabase } from "drizzle-orm/node-postgres";
import * as schema from "./db/auth-schema.ts";

export interface AuthConfig {
  /** Origin of the `iss` and `aud` of every token: auth_jwt.issuer/audience must equal it. */
  baseURL: string;
  /** At least 32 characters; encrypts the signing keys at rest. */
  secret: string;
  /** Frontends allowed to sign in with cookies (Better Auth's CSRF check). */
  trustedOrigins: string[];
  /** Token lifetime. */
  expirationTime?: string;
}

/** `db` connects as the tables' owner: Better Auth manages users, sessions and keys. */
export function createAuth(
  db: NodePgDatabase,
  { baseURL, secret, trustedOrigins, expirationTime = "15m" }: AuthConfig,
) {
  return betterAuth({
    // camelCase: Better Auth's own column names (see db/auth-schema.ts).
    database: drizzleAdapter(db, { provider: "pg", schema, camelCase: true }),
    baseURL,
    secret,
    trustedOrigins,
    emailAndPassword: { enabled: true },
    // The database fills it in (default gen_random_uuid()); clients can never set it.
    user: { additionalFields: { uuid: { type: "string", required: false, input: false } } },
    // sid: the session the token belongs to, so the database refuses it once the user signs out
    // (auth_jwt.require_session, set by the bootstrap). Never session.token: a bearer credential.
    plugins: [
      jwt({ jwt: { expirationTime, definePayload: ({ user, session }) => ({ uuid: user.uuid, sid: session.id }) } }),
    ],
  });
}

export type Auth = ReturnType<typeof createAuth>;
