-- A missing or misnamed key table gives an error that says what to do.
begin;
set local auth_jwt.jwks_table = 'public.no_such_table';
\set ok `"$MINT" token 1`
-- The SQLSTATE, then the whole error as a client sees it (message, detail, hint).
select t.check(:'ok') as sqlstate;
select auth_jwt.jwt_verify(:'ok');
rollback;
begin;
create table public.wrong_columns (kid text, key text);
set local auth_jwt.jwks_table = 'public.wrong_columns';
select t.check(:'ok') as sqlstate;
select auth_jwt.jwt_verify(:'ok');
rollback;
-- A renamed table and columns (Better Auth's schema option) are served through a view.
begin;
create table public.auth_keys (key_id text primary key, public_key text not null, private_key text not null, created_at timestamptz not null, expires_at timestamptz);
insert into public.auth_keys select id, "publicKey", "privateKey", "createdAt", "expiresAt" from public.jwks;
create view public.jwks_view as select key_id as id, public_key as "publicKey", expires_at as "expiresAt" from public.auth_keys;
set local auth_jwt.jwks_table = 'public.jwks_view';
select * from auth_jwt.watch_key_table();
select t.check(:'ok') as through_view;
select kid, status from auth_jwt.jwks_keys() order by kid;
rollback;
