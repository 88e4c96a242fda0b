-- Trust settings are superuser-only (PGC_SUSET) and the auth_jwt prefix is reserved: an
-- application role cannot change them with SET, set_config or ALTER ROLE ... SET.
-- (PGOPTIONS is covered by the integration tests, which open their own connections.)
--
-- Before the library is loaded in a session, PostgreSQL keeps any auth_jwt.* value as an
-- untyped placeholder; when the library loads, it re-applies each one with the privileges of
-- whoever set it, so an application role's values are discarded with a WARNING.
begin;
set local role app;
set local auth_jwt.issuer = '*';
set local auth_jwt.jwks_table = 'evil.jwks';
select current_setting('auth_jwt.issuer') as placeholder_before_load;
\set ok `"$MINT" token 1`
\set evil_iss `"$MINT" token 1 iss=https://evil.example.com`
select t.check(:'evil_iss') as placeholder_ignored;
select current_setting('auth_jwt.issuer') as after_load, current_setting('auth_jwt.jwks_table') as jwks_table;
rollback;
-- Once loaded (as in any session that has verified a token), SET fails outright.
select name, context from pg_settings where name like 'auth_jwt.%' order by name;
begin;
create role app_login login;
set local role app;
select t.err($$set auth_jwt.jwks_table = 'evil.jwks'$$) as jwks_table;
select t.err($$set local auth_jwt.issuer = '*'$$) as issuer;
select t.err($$set auth_jwt.audience = '*'$$) as audience;
select t.err($$set auth_jwt.leeway = 3600$$) as leeway;
select t.err($$set auth_jwt.key_grace_period = '1000d'$$) as key_grace_period;
select t.err($$set auth_jwt.max_token_size = '1MB'$$) as max_token_size;
select t.err($$set auth_jwt.uuid_claim = 'sub'$$) as uuid_claim;
select t.err($$set auth_jwt.token_header = 'x-evil'$$) as token_header;
select t.err($$set auth_jwt.allow_session_token = on$$) as allow_session_token;
select t.err($$set auth_jwt.cache_size = 0$$) as cache_size;
select t.err($$select set_config('auth_jwt.issuer', '*', true)$$) as set_config;
select t.err($$select set_config('auth_jwt.jwks_table', 'public.evil', false)$$) as set_config_session;
-- The reserved prefix: no invented auth_jwt.* placeholders.
select t.err($$set auth_jwt.isuer = 'typo'$$) as typo;
select t.err($$select set_config('auth_jwt.anything', 'x', true)$$) as invented;
-- The one setting any role may write carries a token, nothing more.
select t.err($$set local auth_jwt.token = 'x'$$) as token;
reset role;
set local role app_login;
select t.err($$alter role app_login set auth_jwt.issuer = '*'$$) as alter_role_self;
select t.err($$alter role app_login set auth_jwt.token = 'x'$$) as alter_role_token;
reset role;
-- A superuser can, for a database or a role, and the values take effect.
select t.err($$alter role app_login set auth_jwt.leeway = 5$$) as superuser_alter_role;
select current_setting('auth_jwt.issuer') as issuer_from_alter_database;
select t.check(:'ok') as ok_with_database_setting;
set local auth_jwt.issuer = 'https://other.example.com';
select t.check(:'ok') as superuser_changed_issuer;
rollback;
