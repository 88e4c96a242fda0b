-- Every key Better Auth can generate (jwks.keyPairConfig.alg): EdDSA (Ed25519), ES256 (P-256),
-- ES512 (P-521), RS256 and PS256 (RSA), in one table as keyPairConfigs makes it. The key decides
-- the algorithm, never the token; keys are validated when loaded, with the reason shown.
begin;
\set es256 `"$MINT" jwk 1 ES256`
\set es512 `"$MINT" jwk 1 ES512`
\set rsa `"$MINT" jwk 1 RS256`
\set rsa4096 `"$MINT" jwk 4 RS256`
\set rsa_ps `"$MINT" jwk 2 PS256`
insert into public.jwks values
  ('e256', :'es256', '"x"', now(), null, 'ES256', 'P-256'),
  ('e512', :'es512', '"x"', now(), null, 'ES512', 'P-521'),
  ('r256', :'rsa', '"x"', now(), null, 'RS256', null),
  ('r4096', :'rsa4096', '"x"', now(), null, 'RS256', null),
  ('p256', :'rsa_ps', '"x"', now(), null, 'PS256', null),
  -- Rows from before Better Auth 1.7 have NULL alg and crv: the JWK alone decides, where it can.
  ('e256_old', :'es256', '"x"', now(), null, null, null),
  ('rsa_old', :'rsa', '"x"', now(), null, null, null),
  -- Rows that contradict themselves.
  ('mixed', :'es256', '"x"', now(), null, 'RS256', null),
  ('wrong_crv', :'es512', '"x"', now(), null, 'ES512', 'P-256'),
  ('es384', '{"kty":"EC","crv":"P-384","x":"AAAA","y":"AAAA"}', '"x"', now(), null, 'ES384', 'P-384');
set local role app;
\set ok_es256 `"$MINT" token 1 alg=ES256 kid=e256`
\set ok_es512 `"$MINT" token 1 alg=ES512 kid=e512`
\set ok_rs256 `"$MINT" token 1 alg=RS256 kid=r256`
\set ok_rs4096 `"$MINT" token 4 alg=RS256 kid=r4096`
\set ok_ps256 `"$MINT" token 2 alg=PS256 kid=p256`
\set ok_old `"$MINT" token 1 alg=ES256 kid=e256_old`
select t.check(:'ok_es256') as es256, t.check(:'ok_es512') as es512, t.check(:'ok_rs256') as rs256,
       t.check(:'ok_rs4096') as rs256_4096, t.check(:'ok_ps256') as ps256, t.check(:'ok_old') as es256_null_columns;
-- The key decides: the same RSA key under a PS256 row refuses an RS256 token (validly signed
-- PKCS#1 v1.5) and the reverse; an ES256 header against the P-521 key; RS256 against EC.
\set rs_on_ps `"$MINT" token 2 alg=RS256 kid=p256`
\set ps_on_rs `"$MINT" token 1 alg=PS256 kid=r256`
\set es256_on_512 `"$MINT" token 1 alg=ES256 kid=e512`
\set rs_on_ec `"$MINT" token 1 alg=RS256 kid=e256`
\set ed_on_rsa `"$MINT" token 1 kid=r256`
select t.check(:'rs_on_ps') as rs256_on_ps256_key;
select t.check(:'ps_on_rs') as ps256_on_rs256_key;
select t.check(:'es256_on_512') as es256_on_p521_key;
select t.check(:'rs_on_ec') as rs256_on_ec_key;
select t.check(:'ed_on_rsa') as eddsa_on_rsa_key;
-- A forged one: signed by another key of the same algorithm under r256.
\set forged_rs `"$MINT" token 2 alg=RS256 kid=r256`
select t.check(:'forged_rs') as forged_rs256;
reset role;
-- What auth_jwt makes of each row (the reason says what to fix).
select kid, alg, crv, key_type, status, reason from auth_jwt.jwks_keys() order by kid;
-- Verifications by algorithm.
select verifications_by_algorithm from auth_jwt.stats();
rollback;
