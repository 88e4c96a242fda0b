-- Example app on top of Better Auth's tables (sql/better_auth_schema.sql, or Better Auth's own
-- migrations): a tasks table that each user sees and changes only through a verified token.
-- Used by scripts/demo, the tests and the FastAPI example; copy what you need.
--
-- 1. The hybrid id: Better Auth's user.id stays its string id (the token's sub); the app keys its
--    own tables on user.uuid, which rides in the token as a custom "uuid" claim (definePayload).
--    Better Auth's additionalFields create it as text; make it a real uuid either way.
do $$
declare t text;
begin
    select data_type into t from information_schema.columns
     where table_schema = 'public' and table_name = 'user' and column_name = 'uuid';
    if t is null then
        alter table "user" add column "uuid" uuid not null default gen_random_uuid();
    elsif t <> 'uuid' then
        alter table "user" alter column "uuid" type uuid using "uuid"::uuid,
                           alter column "uuid" set default gen_random_uuid(),
                           alter column "uuid" set not null;
    end if;
    if not exists (select from pg_constraint where conname = 'user_uuid_key') then
        alter table "user" add constraint user_uuid_key unique ("uuid");
    end if;
end $$;

-- 2. auth_jwt, pointed at Better Auth's jwks table (public.jwks is the default).
create extension if not exists auth_jwt;

-- 3. The application's data.
create table public.tasks (
    id uuid primary key default gen_random_uuid(),
    user_id uuid not null default auth_jwt.jwt_claim_uuid() references "user" ("uuid") on delete cascade,
    title text not null check (length(title) between 1 and 200),
    completed boolean not null default false,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);
create index tasks_user_id_idx on public.tasks (user_id);

-- 4. Roles, PostgREST-style: clients log in as authenticator and switch per transaction.
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
do $$
declare t text;
begin
    foreach t in array array['user', 'session', 'account', 'verification', 'jwks'] loop
        if to_regclass(format('public.%I', t)) is not null then
            execute format('revoke all on public.%I from public, anon, authenticated', t);
        end if;
    end loop;
end $$;

-- 5. Row-level security: a user can read and write only rows whose user_id is the uuid in a
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
