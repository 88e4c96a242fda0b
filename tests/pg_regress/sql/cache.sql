-- Keys are parsed once per backend; the warm path runs no SPI; a change of the key table is
-- seen by the next statement here (and by other backends' next transaction: see the
-- integration tests); an unknown kid reloads at most once per second.
select auth_jwt.stats_reset();
\set t1 `"$MINT" token 1`
\set t1b `"$MINT" token 1 sub=another`
\set t3 `"$MINT" token 3 kid=k3`
select t.check(:'t1') as first;
select t.check(:'t1') as same_token, t.check(:'t1b') as new_token_cached_key;
select verifications, cache_hits, key_loads from auth_jwt.stats();
begin;
select t.check(:'t1') as new_transaction;
commit;
select verifications, cache_hits, key_loads, cached_tokens from auth_jwt.stats();
-- An unknown kid: one reload, then refused; a second one within a second: no reload.
select t.check(:'t3') as unknown_kid;
select t.check(:'t3') as unknown_again;
select key_loads, unknown_kid_reloads from auth_jwt.stats();
-- A new key, committed: the trigger invalidates the cache, the next statement sees it.
\set jwk3 `"$MINT" jwk 3`
insert into public.jwks values ('k3', :'jwk3', '"x"', now(), null, 'EdDSA', 'Ed25519');
select t.check(:'t3') as after_insert;
-- Deleting a key revokes its tokens at once, cached or not.
delete from public.jwks where id = 'k1';
select t.check(:'t1') as after_delete, t.check(:'t1b') as cached_token_after_delete;
-- UPDATE (a rotated publicKey under the same id) and TRUNCATE are seen too.
update public.jwks set "publicKey" = :'jwk3' where id = 'k2';
\set t2 `"$MINT" token 2`
select t.check(:'t2') as old_key_material;
truncate public.jwks;
select t.check(:'t3') as after_truncate;
select key_loads >= 5 as reloaded_each_change from auth_jwt.stats();
-- Put the fixtures back for the other tests.
\set jwk1 `"$MINT" jwk 1`
\set jwk2 `"$MINT" jwk 2`
insert into public.jwks values
  ('k1', :'jwk1', '"encrypted-private-key"', now(), NULL, 'EdDSA', 'Ed25519'),
  ('k2', :'jwk2', '"encrypted-private-key"', now(), NULL, NULL, NULL);
select t.check(:'t1') as restored;
