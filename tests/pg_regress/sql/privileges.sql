-- The calling role needs no privilege on the key table, and "privateKey" is never read: the
-- table's owner here may read every column but that one, and verification still works.
begin;
create role better_auth nologin;
alter table public.jwks owner to better_auth;
revoke all on public.jwks from better_auth;
grant select (id, "publicKey", "createdAt", "expiresAt", alg, crv) on public.jwks to better_auth;
\set ok `"$MINT" token 1`
set local role app;
select has_table_privilege('public.jwks', 'select') as app_can_read_jwks;
select t.check(:'ok') as as_app;
select t.err('select count(*) from public.jwks') as app_select_jwks;
reset role;
-- The owner itself cannot read "privateKey": had auth_jwt asked for it, this would fail.
set local role better_auth;
select t.err('select "privateKey" from public.jwks') as owner_private_key;
reset role;
select count(*) as keys, bool_and(status = 'usable') as all_usable from auth_jwt.jwks_keys() where kid in ('k1', 'k2');
rollback;
