-- Example schema: a Better Auth app with a tasks table protected by auth_jwt.
-- Used by scripts/demo and the tests; copy what you need.
--
-- 1. Better Auth 1.7's tables, exactly as its migration creates them (emailAndPassword + jwt()).
create table "user" ("id" text not null primary key, "name" text not null, "email" text not null unique, "emailVerified" boolean not null, "image" text, "createdAt" timestamptz default CURRENT_TIMESTAMP not null, "updatedAt" timestamptz default CURRENT_TIMESTAMP not null);
create table "session" ("id" text not null primary key, "expiresAt" timestamptz not null, "token" text not null unique, "createdAt" timestamptz default CURRENT_TIMESTAMP not null, "updatedAt" timestamptz not null, "ipAddress" text, "userAgent" text, "userId" text not null references "user" ("id") on delete cascade);
create table "account" ("id" text not null primary key, "accountId" text not null, "providerId" text not null, "userId" text not null references "user" ("id") on delete cascade, "accessToken" text, "refreshToken" text, "idToken" text, "accessTokenExpiresAt" timestamptz, "refreshTokenExpiresAt" timestamptz, "scope" text, "password" text, "createdAt" timestamptz default CURRENT_TIMESTAMP not null, "updatedAt" timestamptz not null);
create table "verification" ("id" text not null primary key, "identifier" text not null, "value" text not null, "expiresAt" timestamptz not null, "createdAt" timestamptz default CURRENT_TIMESTAMP not null, "updatedAt" timestamptz default CURRENT_TIMESTAMP not null);
create table "jwks" ("id" text not null primary key, "publicKey" text not null, "privateKey" text not null, "createdAt" timestamptz not null, "expiresAt" timestamptz, "alg" text, "crv" text);
create index "session_userId_idx" on "session" ("userId");
create index "account_userId_idx" on "account" ("userId");
create index "verification_identifier_idx" on "verification" ("identifier");

-- 2. The hybrid id: Better Auth's user.id stays its string id (the token's sub); the app keys its
--    own tables on user.uuid, which rides in the token as a custom "uuid" claim (definePayload).
alter table "user" add column "uuid" uuid not null default gen_random_uuid() unique;

-- 3. auth_jwt, pointed at Better Auth's jwks table (public.jwks is the default).
create extension if not exists auth_jwt;

-- 4. The application's data.
create table public.tasks (
    id uuid primary key default gen_random_uuid(),
    user_id uuid not null default auth_jwt.jwt_claim_uuid() references "user" ("uuid") on delete cascade,
    title text not null check (length(title) between 1 and 200),
    completed boolean not null default false,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);
create index tasks_user_id_idx on public.tasks (user_id);

-- 5. Roles, PostgREST-style: clients log in as authenticator and switch per transaction.
do $$
begin
    if not exists (select from pg_roles where rolname = 'anon') then
        create role anon nologin;
    end if;
    if not exists (select from pg_roles where rolname = 'authenticated') then
        create role authenticated nologin;
    end if;
    if not exists (select from pg_roles where rolname = 'authenticator') then
        create role authenticator login noinherit;
    end if;
end $$;
grant anon, authenticated to authenticator;
grant usage on schema public to anon, authenticated;
grant select, insert, update, delete on public.tasks to authenticated;
grant select on public.tasks to anon;
-- Nothing on Better Auth's own tables: keys, sessions, accounts and verifications stay private.
revoke all on "user", "session", "account", "verification", "jwks" from public, anon, authenticated;

-- 6. Row-level security: a user can read and write only rows whose user_id is the uuid in a
--    token that auth_jwt verified. Without a token, jwt_claim_uuid() is NULL and nothing matches.
alter table public.tasks enable row level security;
create policy tasks_select on public.tasks for select to anon, authenticated
    using (user_id = auth_jwt.jwt_claim_uuid());
create policy tasks_insert on public.tasks for insert to authenticated
    with check (user_id = auth_jwt.jwt_claim_uuid());
create policy tasks_update on public.tasks for update to authenticated
    using (user_id = auth_jwt.jwt_claim_uuid())
    with check (user_id = auth_jwt.jwt_claim_uuid());
create policy tasks_delete on public.tasks for delete to authenticated
    using (user_id = auth_jwt.jwt_claim_uuid());
