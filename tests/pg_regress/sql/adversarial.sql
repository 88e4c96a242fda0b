-- Adversarial suite, by attack class. Every case must end in a clean 28000 error with the right
-- message: never XX000, never a crashed backend, never a leaked secret (see no_secrets).
begin;
create temp table results (class text, name text, result text);
create function pg_temp.try(cls text, nm text, tok text) returns void language sql as $$
  insert into results values (cls, nm, t.check(tok)) $$;
\set good `"$MINT" token 1`

-- 1. Algorithm confusion: none, HMAC with the public key as secret, case variants, prehash.
\set a1 `"$MINT" token 1 'header={"alg":"none","kid":"k1"}'`
\set a2 `"$MINT" token 1 'header={"alg":"HS256","kid":"k1"}'`
\set a3 `"$MINT" token 1 'header={"alg":"HS512","kid":"k1","typ":"JWT"}'`
\set a4 `"$MINT" token 1 'header={"alg":"eDdSa","kid":"k1"}'`
\set a5 `"$MINT" token 1 'header={"alg":"Ed25519ph","kid":"k1"}'`
\set a6 `"$MINT" token 1 'header={"alg":"ES256K","kid":"k1"}'`
select pg_temp.try('alg', 'none', :'a1'), pg_temp.try('alg', 'HS256', :'a2'), pg_temp.try('alg', 'HS512', :'a3'),
       pg_temp.try('alg', 'case variant', :'a4'), pg_temp.try('alg', 'Ed25519ph', :'a5'), pg_temp.try('alg', 'ES256K', :'a6'),
       pg_temp.try('alg', 'none, empty signature', split_part(:'a1', '.', 1) || '.' || split_part(:'a1', '.', 2) || '.');

-- 2. kid injection.
\set k1 `"$MINT" token 1 "kid=k1' OR '1'='1"`
\set k2 `"$MINT" token 1 "kid=k1'; DROP TABLE public.jwks; --"`
\set k3 `"$MINT" token 1 kid=../../../../etc/passwd`
\set k4 `"$MINT" token 1 'header={"alg":"EdDSA","kid":"k1\u0000"}'`
\set k5 `"$MINT" token 1 'header={"alg":"EdDSA","kid":["k1"]}'`
\set k6 `"$MINT" token 1 'header={"alg":"EdDSA","kid":{"id":"k1"}}'`
\set k7 `"$MINT" token 1 'header={"alg":"EdDSA","kid":true}'`
select pg_temp.try('kid', 'sql', :'k1'), pg_temp.try('kid', 'sql drop', :'k2'), pg_temp.try('kid', 'path traversal', :'k3'),
       pg_temp.try('kid', 'NUL', :'k4'), pg_temp.try('kid', 'array', :'k5'), pg_temp.try('kid', 'object', :'k6'),
       pg_temp.try('kid', 'boolean', :'k7');
-- A 1 MB kid: refused by size, before decoding, even with the limit at its maximum.
set local auth_jwt.max_token_size = '1MB';
select pg_temp.try('kid', '1 MB kid', 'eyJhbGciOiJFZERTQSIsImtpZCI6I' || repeat('A', 1024 * 1024) || '.e30.AA');
reset auth_jwt.max_token_size;
select count(*) as jwks_rows_intact from public.jwks;

-- 3. Embedded keys: never trusted, never fetched (signed by an attacker key 9).
\set e1 `"$MINT" token 9 kid=k1 'header={"alg":"EdDSA","kid":"k1","jwk":{"kty":"OKP","crv":"Ed25519","x":"AAAA"}}'`
\set e2 `"$MINT" token 9 'header={"alg":"EdDSA","jku":"http://127.0.0.1:1/jwks.json"}'`
\set e3 `"$MINT" token 9 'header={"alg":"EdDSA","kid":"k1","x5u":"http://127.0.0.1:1/cert.pem"}'`
\set e4 `"$MINT" token 9 'header={"alg":"EdDSA","kid":"k1","x5c":["MIIBIjANBgkq"]}'`
\set e5 `"$MINT" token 9 'header={"alg":"EdDSA","kid":"k1","x5t#S256":"abc"}'`
select pg_temp.try('embedded key', 'jwk', :'e1'), pg_temp.try('embedded key', 'jku', :'e2'), pg_temp.try('embedded key', 'x5u', :'e3'),
       pg_temp.try('embedded key', 'x5c', :'e4'), pg_temp.try('embedded key', 'x5t#S256', :'e5');

-- 4. Duplicate members (parser differentials).
\set d1 `"$MINT" token 1 'header={"alg":"EdDSA","kid":"k1","kid":"k2"}'`
\set d2 `"$MINT" token 1 'payload={"exp":9999999999,"iss":"https://app.example.com","aud":"https://app.example.com","uuid":"00000000-0000-4000-8000-000000000001","uuid":"00000000-0000-4000-8000-000000000002"}'`
\set d3 `"$MINT" token 1 'payload={"exp":1,"exp":9999999999,"iss":"https://app.example.com","aud":"https://app.example.com"}'`
select pg_temp.try('duplicates', 'header kid', :'d1'), pg_temp.try('duplicates', 'payload uuid', :'d2'),
       pg_temp.try('duplicates', 'payload exp', :'d3');

-- 5. Encoding malleability.
select pg_temp.try('encoding', 'padding', split_part(:'good', '.', 1) || '==.' || split_part(:'good', '.', 2) || '.' || split_part(:'good', '.', 3)),
       pg_temp.try('encoding', 'inner whitespace', split_part(:'good', '.', 1) || '.' || split_part(:'good', '.', 2) || ' .' || split_part(:'good', '.', 3)),
       pg_temp.try('encoding', 'tab', E'\t' || :'good'),
       pg_temp.try('encoding', 'plus', split_part(:'good', '.', 1) || '.' || split_part(:'good', '.', 2) || '.+' || substr(split_part(:'good', '.', 3), 2)),
       pg_temp.try('encoding', 'slash', '/' || substr(:'good', 2)),
       pg_temp.try('encoding', 'non-ASCII', 'é' || substr(:'good', 2)),
       pg_temp.try('encoding', 'JSON serialization', json_build_object('protected', split_part(:'good', '.', 1), 'payload', split_part(:'good', '.', 2), 'signature', split_part(:'good', '.', 3))::text),
       pg_temp.try('encoding', 'quoted', '"' || :'good' || '"');
-- Trailing bits: every non-canonical last character of the signature.
select pg_temp.try('encoding', 'trailing bits ' || c, left(:'good', length(:'good') - 1) || c)
  from unnest(array['B','C','D','R','S','h','i','x','y','z']) c
 where c <> right(:'good', 1);

-- 6. Claim type confusion. NumericDates are any finite JSON number (RFC 7519, as jose reads
--    them), so fractional and exponent dates are accepted; every other type is refused.
\set c1 `"$MINT" token 1 'exp="9999999999"'`
\set c2 `"$MINT" token 1 exp=9999999999.0`
\set c3 `"$MINT" token 1 exp=1e300`
\set c4 `"$MINT" token 1 'claims={"exp":-9999999999}'`
\set c5 `"$MINT" token 1 'payload={"exp":NaN,"iss":"https://app.example.com","aud":"https://app.example.com"}'`
\set c6 `"$MINT" token 1 'payload={"exp":Infinity,"iss":"https://app.example.com","aud":"https://app.example.com"}'`
\set c7 `"$MINT" token 1 'nbf="0"'`
\set c8 `"$MINT" token 1 iat=0.5`
\set c9 `"$MINT" token 1 'claims={"aud":[["https://app.example.com"]]}'`
\set c10 `"$MINT" token 1 'claims={"aud":42}'`
\set c11 `"$MINT" token 1 'claims={"iss":null}'`
\set c12 `"$MINT" token 1 'payload={"exp":99999999999999999999999999999999,"iss":"https://app.example.com","aud":"https://app.example.com"}'`
\set c13 `"$MINT" token 1 'payload={"exp":9999999999,"iss":"https://app.example.com","aud":"https://app.example.com","x":1e-20000}'`
select pg_temp.try('claims', 'exp string', :'c1'), pg_temp.try('claims', 'exp float (accepted)', :'c2'), pg_temp.try('claims', 'exp 1e300 (accepted)', :'c3'),
       pg_temp.try('claims', 'exp negative', :'c4'), pg_temp.try('claims', 'exp NaN', :'c5'), pg_temp.try('claims', 'exp Infinity', :'c6'),
       pg_temp.try('claims', 'nbf string', :'c7'), pg_temp.try('claims', 'iat float (accepted)', :'c8'), pg_temp.try('claims', 'aud nested', :'c9'),
       pg_temp.try('claims', 'aud number', :'c10'), pg_temp.try('claims', 'iss null', :'c11'), pg_temp.try('claims', 'exp huge (accepted)', :'c12'),
       pg_temp.try('claims', 'number beyond numeric', :'c13');

-- 7. A flipped bit in every character of every segment (each position swapped for another
--    base64url character): none verifies, all are clean 28000s.
insert into results
select 'bit flips', 'position ' || i, t.check(overlay(:'good' placing
         case substr(:'good', i, 1) when 'A' then 'B' when '.' then 'A' else 'A' end from i for 1))
  from generate_series(1, length(:'good')) i;

-- 8. Signature malleability: S + L (same R, non-canonical S).
\set m1 `"$MINT" token 1 malleate=1`
select pg_temp.try('malleability', 'S + L', :'m1');

-- 9. Small-order and malformed key rows (a token "signed" for them).
insert into public.jwks values
  ('small', '{"kty":"OKP","crv":"Ed25519","x":"AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}', 'x', now(), null, null, null),
  ('noncanon', '{"kty":"OKP","crv":"Ed25519","x":"7v_______________________________________38"}', 'x', now(), null, null, null),
  ('rsa', '{"kty":"RSA","n":"sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw","e":"AQAB"}', 'x', now(), null, 'RS256', null),
  ('truncated', '{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHUR"}', 'x', now(), null, null, null);
\set r1 `"$MINT" token 1 kid=small`
\set r2 `"$MINT" token 1 kid=noncanon`
\set r3 `"$MINT" token 1 kid=rsa`
\set r4 `"$MINT" token 1 kid=truncated`
select pg_temp.try('key rows', 'small order', :'r1'), pg_temp.try('key rows', 'non-canonical', :'r2'),
       pg_temp.try('key rows', 'RSA row', :'r3'), pg_temp.try('key rows', 'truncated x', :'r4');

-- 10. Size and nesting depth.
\set n1 `"$MINT" token 1 nest=60`
\set n2 `"$MINT" token 1 nest=200`
select pg_temp.try('size', 'nesting 60 (accepted)', :'n1'), pg_temp.try('size', 'nesting 200', :'n2'),
       pg_temp.try('size', '100,000 dots', repeat('.', 100000)),
       pg_temp.try('size', '1 MiB', repeat('a', 1024 * 1024)),
       pg_temp.try('size', '100 MiB', repeat('a', 100 * 1024 * 1024));

-- 11. Invalid UTF-8, lone surrogates, NUL.
\set u1 `"$MINT" token 1 payloadhex=7b22657870223a393939393939393939392c22697373223a2268747470733a2f2f6170702e6578616d706c652e636f6d222c22617564223a2268747470733a2f2f6170702e6578616d706c652e636f6d222c2278223a22ff227d`
\set u2 `"$MINT" token 1 'payload={"exp":9999999999,"iss":"https://app.example.com","aud":"https://app.example.com","x":"\udc00"}'`
\set u3 `"$MINT" token 1 'payload={"exp":9999999999,"iss":"https://app.example.com","aud":"https://app.example.com","x":"\u0000"}'`
\set u4 `"$MINT" token 1 payloadhex=efbbbf7b22657870223a393939393939393939397d`
select pg_temp.try('unicode', 'invalid UTF-8', :'u1'), pg_temp.try('unicode', 'lone surrogate', :'u2'),
       pg_temp.try('unicode', 'NUL escape', :'u3'), pg_temp.try('unicode', 'BOM', :'u4');

-- 12. OAuth token confusion: same keys, other token types.
\set o1 `"$MINT" token 1 'header={"alg":"EdDSA","kid":"k1","typ":"at+jwt"}'`
\set o2 `"$MINT" token 1 'header={"alg":"EdDSA","kid":"k1","typ":"logout+jwt"}'`
\set o3 `"$MINT" token 1 'header={"alg":"EdDSA","kid":"k1","typ":"application/at+jwt"}'`
select pg_temp.try('typ', 'at+jwt', :'o1'), pg_temp.try('typ', 'logout+jwt', :'o2'), pg_temp.try('typ', 'application/at+jwt', :'o3');

-- Every case by class: its SQLSTATE and message; no XX000 anywhere.
-- (Bit flips are summarized by SQLSTATE only: which message each position gets depends on the
-- token's bytes, which change with its iat and exp.)
select class, case when class = 'bit flips' then left(result, 5) else split_part(result, ' | ', 1) end as outcome, count(*)
  from results group by 1, 2 order by 1, 2;
select count(*) as not_28000 from results where result not like '28000 %' and name not like '%(accepted)';
select name, result from results where class in ('kid', 'embedded key', 'duplicates', 'claims', 'unicode', 'size', 'key rows', 'encoding', 'alg', 'typ', 'malleability') order by class, name;
rollback;
