-- kid selects the key row by id, exactly; a token without kid needs exactly one usable key;
-- unusable rows (wrong kty/crv, bad x, weak keys, expired past the grace period) never verify.
begin;
\set t1 `"$MINT" token 1`
\set t2 `"$MINT" token 2`
select t.check(:'t1') as k1, t.check(:'t2') as k2;
-- Signed by key 2 but naming k1: a forgery.
\set forged `"$MINT" token 2 kid=k1`
select t.check(:'forged');
-- Exact comparison: case, whitespace, prefixes, and the uuid-looking id of generateId: "uuid".
\set upper `"$MINT" token 1 kid=K1`
\set space `"$MINT" token 1 'kid=k1 '`
\set prefix `"$MINT" token 1 kid=k`
select t.check(:'upper') as upper, t.check(:'space') as space, t.check(:'prefix') as prefix;
\set sqli `"$MINT" token 1 "kid=k1' OR '1'='1"`
select t.check(:'sqli');
\set path `"$MINT" token 1 kid=../../etc/passwd`
select t.check(:'path');
\set kidnum `"$MINT" token 1 'header={"alg":"EdDSA","kid":1}'`
select t.check(:'kidnum');
-- A uuid id (Better Auth advanced.database.generateId: "uuid") is just a string.
\set jwk3 `"$MINT" jwk 3`
insert into public.jwks values ('7b1f0e4c-8d2a-4c53-9e61-2f0a3b4c5d6e', :'jwk3', '"x"', now(), null, null, null);
\set t3 `"$MINT" token 3 kid=7b1f0e4c-8d2a-4c53-9e61-2f0a3b4c5d6e`
\set t3u `"$MINT" token 3 kid=7B1F0E4C-8D2A-4C53-9E61-2F0A3B4C5D6E`
select t.check(:'t3') as uuid_id, t.check(:'t3u') as uuid_id_upper;
-- No kid: refused while several keys are usable ...
\set nokid `"$MINT" token 1 nokid=1`
select t.check(:'nokid');
-- ... accepted when exactly one is.
delete from public.jwks where id <> 'k1';
select t.check(:'nokid');
-- Unusable rows.
insert into public.jwks values
  ('ec', '{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}', '"x"', now(), null, 'ES256', 'P-256'),
  ('x25519', '{"kty":"OKP","crv":"X25519","x":"hSDwCYkwp1R0i33ctD73Wg2_Og0mOBr066SpjqqbTmo"}', '"x"', now(), null, null, null),
  ('short', '{"kty":"OKP","crv":"Ed25519","x":"AAAA"}', '"x"', now(), null, null, null),
  ('weak', '{"kty":"OKP","crv":"Ed25519","x":"AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}', '"x"', now(), null, null, null),
  ('noncanon', '{"kty":"OKP","crv":"Ed25519","x":"7v_______________________________________38"}', '"x"', now(), null, null, null),
  ('notjson', 'not json', '"x"', now(), null, null, null),
  ('private', '{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"}', '"x"', now(), null, null, null);
select kid, status, reason from auth_jwt.jwks_keys() order by kid;
\set t_ec `"$MINT" token 1 kid=ec`
\set t_weak `"$MINT" token 1 kid=weak`
\set t_short `"$MINT" token 1 kid=short`
\set t_x25519 `"$MINT" token 1 kid=x25519`
select t.check(:'t_ec');
select t.check(:'t_weak');
select t.check(:'t_short');
select t.check(:'t_x25519');
-- Unusable rows do not count as "usable" for a token without kid.
select t.check(:'nokid');
-- expiresAt + auth_jwt.key_grace_period: within grace the key verifies, after it not.
update public.jwks set "expiresAt" = now() - interval '10 days' where id = 'k1';
select t.check(:'t1') as in_grace, (select status from auth_jwt.jwks_keys() where kid = 'k1');
set local auth_jwt.key_grace_period = '9d';
select t.check(:'t1') as past_grace, (select status from auth_jwt.jwks_keys() where kid = 'k1');
set local auth_jwt.key_grace_period = 0;
update public.jwks set "expiresAt" = now() + interval '1 hour' where id = 'k1';
select t.check(:'t1') as not_yet_expired;
-- A duplicated id (a careless view) is ambiguous: neither row verifies.
create view public.jwks_dup as select * from public.jwks union all select * from public.jwks where id = 'k1';
set local auth_jwt.jwks_table = 'public.jwks_dup';
select t.check(:'t1');
rollback;
-- Key reads pin DateStyle and TimeZone: a view that depends on them reads the same whatever
-- the caller set (a text "expiresAt" cannot be read as another date).
begin;
create view public.jwks_styled as select id, "publicKey",
  case when current_setting('DateStyle') = 'ISO, MDY' and current_setting('TimeZone') = 'UTC'
       then null else now() - interval '100 days' end::timestamptz as "expiresAt" from public.jwks;
set local auth_jwt.jwks_table = 'public.jwks_styled';
set local auth_jwt.key_grace_period = 0;
set local datestyle = 'SQL, DMY';
set local timezone = 'Asia/Tokyo';
select t.check(:'t1') as pinned;
rollback;
