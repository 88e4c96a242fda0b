-- Push mode: auth_jwt.import_jwks(jwks) stores a JWKS document in auth_jwt.jwks, which the key
-- loader reads like Better Auth's table (same trigger, same rules); the caller learns what changed.
\set jwk3 `"$MINT" jwk 3`
\set jwk4 `"$MINT" jwk 4`
\set jwk5 `"$MINT" jwk 5`
\set t3 `"$MINT" token 3`
\set t4 `"$MINT" token 4`
\set t5 `"$MINT" token 5`
create temp table docs (name text primary key, doc jsonb);
grant select on docs to public;
insert into docs values
  ('first', jsonb_build_object('keys', jsonb_build_array(
     (:'jwk3')::jsonb || '{"kid": "k3", "alg": "EdDSA"}', (:'jwk4')::jsonb || '{"kid": "k4", "alg": "EdDSA"}'))),
  ('rotated', jsonb_build_object('keys', jsonb_build_array(
     (:'jwk4')::jsonb || '{"kid": "k4", "alg": "EdDSA"}', (:'jwk5')::jsonb || '{"kid": "k5", "alg": "EdDSA"}'))),
  ('replaced', jsonb_build_object('keys', jsonb_build_array(
     (:'jwk5')::jsonb || '{"kid": "k4", "alg": "EdDSA"}', (:'jwk5')::jsonb || '{"kid": "k5", "alg": "EdDSA"}')));
set auth_jwt.jwks_table = 'auth_jwt.jwks';
select * from auth_jwt.import_jwks((select doc from docs where name = 'first'));
select t.check(:'t3') as k3, t.check(:'t4') as k4, t.check(:'t5') as k5;
-- The next document: added, removed and unchanged, seen by the next statement.
select * from auth_jwt.import_jwks((select doc from docs where name = 'rotated'));
select t.check(:'t3') as k3_removed, t.check(:'t4') as k4, t.check(:'t5') as k5_added;
-- The same document again changes nothing.
select * from auth_jwt.import_jwks((select doc from docs where name = 'rotated'));
-- A kid now bound to other key material: the old tokens of that kid stop at once.
select * from auth_jwt.import_jwks((select doc from docs where name = 'replaced'));
select t.check(:'t4') as k4_replaced;
select kid, alg, status, source from auth_jwt.jwks_keys() order by kid;
-- Documents that are not a key set are refused whole, and nothing changes.
select t.err($$select auth_jwt.import_jwks('[]')$$) as not_a_document;
select t.err($$select auth_jwt.import_jwks('{"keys": [{"kty": "OKP"}]}')$$) as no_kid;
select t.err($$select auth_jwt.import_jwks('{"keys": [{"kid": "a"}, {"kid": "a"}]}')$$) as duplicate_kid;
select t.err($$select auth_jwt.import_jwks('{"keys": [{"kid": "a", "kty": "OKP", "crv": "Ed25519", "x": "AA", "d": "c2VjcmV0LXNlZWQ"}]}')$$) as private_key;
select count(*) as keys_kept from auth_jwt.jwks;
-- Only at READ COMMITTED: an older snapshot could miss keys a concurrent import added (the race
-- itself: tests/integration/test_jwks_url.py).
begin isolation level repeatable read;
select t.err($$select auth_jwt.import_jwks('{"keys": []}')$$) as repeatable_read;
rollback;
begin isolation level serializable;
select t.err($$select auth_jwt.import_jwks('{"keys": []}')$$) as serializable;
rollback;
select count(*) as keys_still_kept from auth_jwt.jwks;
-- Superuser only unless granted; the table itself is nobody else's.
set role app;
select t.err($$select auth_jwt.import_jwks('{"keys": []}')$$) as as_app;
select t.err($$delete from auth_jwt.jwks$$) as write_directly;
reset role;
create role key_pusher nologin;
grant execute on function auth_jwt.import_jwks(jsonb) to key_pusher;
set role key_pusher;
select kid, action from auth_jwt.import_jwks((select doc from docs where name = 'first')) order by kid;
reset role;
select t.check(:'t3') as k3_back;
-- Dumped with the database (an extension configuration table), watched like any key table.
select cfg::regclass as configuration_table from pg_extension e, unnest(e.extconfig) cfg where e.extname = 'auth_jwt';
select relation, action from auth_jwt.watch_key_table();
-- Clean up.
select count(*) as removed from auth_jwt.import_jwks('{"keys": []}');
reset auth_jwt.jwks_table;
revoke execute on function auth_jwt.import_jwks(jsonb) from key_pusher;
drop role key_pusher;
