-- The key read is schema-qualified and runs with a pinned search_path: neither the caller's
-- search_path, nor its own table named jwks, nor a temp table named jwks can redirect it; the
-- setting itself must be schema-qualified.
begin;
\set jwk9 `"$MINT" jwk 9`
\set forged `"$MINT" token 9 kid=k1`
\set ok `"$MINT" token 1`
create schema evil authorization app;
set local role app;
create table evil.jwks (id text, "publicKey" text);
insert into evil.jwks values ('k1', :'jwk9');
create temp table jwks (id text, "publicKey" text);
insert into pg_temp.jwks values ('k1', :'jwk9');
set local search_path = evil, pg_temp, public;
select t.check(:'forged') as own_table_and_temp_table, t.check(:'ok') as real_key;
set local search_path = pg_temp, evil, public, pg_catalog;
select t.check(:'forged') as temp_first, t.check(:'ok') as real_key;
-- Look-alike operators and functions on the caller's path are not used either.
create function evil.quote_ident(text) returns text language sql as $$ select 'public.jwks_evil' $$;
create function evil.date_part(text, timestamptz) returns float8 language sql as $$ select 1e12::float8 $$;
select t.check(:'forged') as shadowed_functions, t.check(:'ok') as real_key;
reset role;
reset search_path;
-- An unqualified or temporary table name is refused outright.
set local auth_jwt.jwks_table = 'jwks';
select t.check(:'ok') as unqualified;
set local auth_jwt.jwks_table = 'pg_temp.jwks';
select t.check(:'ok') as temp_schema;
set local auth_jwt.jwks_table = 'evil.jwks';
select t.check(:'forged') as superuser_chose_evil, t.check(:'ok') as real_key_absent_there;
rollback;
