// What migrations cannot do, because it takes a superuser: the auth_jwt extension, the roles the
// API switches between, the issuer/audience auth_jwt requires of every token (Better Auth's
// baseURL origin), and sessions required. Idempotent. `npm run db:setup` runs it, then `drizzle-kit migrate`, then it
// again, to attach auth_jwt's key-change trigger to the jwks table the migrations created.
//
//   ADMIN_DATABASE_URL=postgresql://postgres@localhost/tasks BETTER_AUTH_URL=http://localhost:3000 npm run db:bootstrap
import { fileURLToPath } from "node:url";
import pg from "pg";

/** Returns whether Better Auth's jwks table exists yet, and so is watched. */
export async function bootstrap(admin: pg.ClientBase, betterAuthUrl: string): Promise<boolean> {
  const { origin } = new URL(betterAuthUrl);
  const [{ db }] = (await admin.query<{ db: string }>("select current_database() as db")).rows;
  await admin.query(`
    create extension if not exists auth_jwt;
    do $$ begin
      -- Roles are cluster-wide: created once, by whichever database comes first.
      if not exists (select from pg_roles where rolname = 'anon') then create role anon nologin; end if;
      if not exists (select from pg_roles where rolname = 'authenticated') then create role authenticated nologin; end if;
      -- The API's login role: no privileges of its own (noinherit), it may only SET ROLE.
      if not exists (select from pg_roles where rolname = 'authenticator') then create role authenticator login noinherit; end if;
    end $$;
    grant anon, authenticated to authenticator;
    alter database ${admin.escapeIdentifier(db)} set auth_jwt.issuer = ${admin.escapeLiteral(origin)};
    alter database ${admin.escapeIdentifier(db)} set auth_jwt.audience = ${admin.escapeLiteral(origin)};
    -- Sign-out, revoked sessions and bans end the token at the next transaction, not at its exp:
    -- a token passes only while Better Auth's session row its sid names is live.
    alter database ${admin.escapeIdentifier(db)} set auth_jwt.require_session = on;
  `);
  const { rows } = await admin.query<{ jwks: boolean; session: boolean }>(
    "select to_regclass('public.jwks') is not null as jwks, to_regclass('public.session') is not null as session",
  );
  // A trigger on the key table tells every backend when Better Auth adds or removes a key; one on
  // the session table, when a session ends (sign-out, revocation, ban), so that each backend can
  // keep live sessions between transactions.
  if (rows[0].jwks) await admin.query("select auth_jwt.watch_key_table()");
  if (rows[0].session) await admin.query("select auth_jwt.watch_session_table()");
  return rows[0].jwks && rows[0].session;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const betterAuthUrl = process.env.BETTER_AUTH_URL ?? "http://localhost:3000";
  const admin = new pg.Client({ connectionString: process.env.ADMIN_DATABASE_URL });
  await admin.connect();
  try {
    const watched = await bootstrap(admin, betterAuthUrl);
    console.log(
      `auth_jwt: issuer and audience ${new URL(betterAuthUrl).origin}; roles anon, authenticated, authenticator`,
    );
    console.log(
      watched
        ? "auth_jwt: watching the jwks and session tables"
        : "auth_jwt: no jwks or session table yet: run this again after the migrations",
    );
  } finally {
    await admin.end();
  }
}
