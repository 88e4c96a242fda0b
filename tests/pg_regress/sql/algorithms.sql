-- alg must be exactly one of Better Auth's algorithms (EdDSA or its name Ed25519 (RFC 9864),
-- ES256, ES512, RS256, PS256), checked before the key, and the key's (key_types.sql); no crit;
-- typ, when present, must be JWT; embedded keys (jwk, jku, x5u, x5c) are refused, never fetched.
begin;
\set eddsa `"$MINT" token 1 'header={"alg":"EdDSA","kid":"k1"}'`
\set ed25519 `"$MINT" token 1 'header={"alg":"Ed25519","kid":"k1"}'`
\set typ_jwt `"$MINT" token 1 'header={"alg":"EdDSA","kid":"k1","typ":"JWT"}'`
select t.check(:'eddsa') as eddsa, t.check(:'ed25519') as ed25519, t.check(:'typ_jwt') as typ_jwt;
\set none `"$MINT" token 1 'header={"alg":"none","kid":"k1"}'`
select t.check(:'none');
-- alg none with an empty signature, the classic.
select t.check(split_part(:'none', '.', 1) || '.' || split_part(:'none', '.', 2) || '.');
\set hs256 `"$MINT" token 1 'header={"alg":"HS256","kid":"k1"}'`
select t.check(:'hs256');
-- Algorithms auth_jwt verifies, but not with k1, an Ed25519 key.
\set rs256 `"$MINT" token 1 'header={"alg":"RS256","kid":"k1"}'`
select t.check(:'rs256');
\set es256 `"$MINT" token 1 'header={"alg":"ES256","kid":"k1"}'`
select t.check(:'es256');
-- Algorithms Better Auth does not sign with.
\set es384 `"$MINT" token 1 'header={"alg":"ES384","kid":"k1"}'`
\set rs512 `"$MINT" token 1 'header={"alg":"RS512","kid":"k1"}'`
\set hs512 `"$MINT" token 1 'header={"alg":"HS512","kid":"k1"}'`
select t.check(:'es384') as es384, t.check(:'rs512') as rs512, t.check(:'hs512') as hs512;
\set lower `"$MINT" token 1 'header={"alg":"eddsa","kid":"k1"}'`
select t.check(:'lower');
\set upper `"$MINT" token 1 'header={"alg":"EDDSA","kid":"k1"}'`
select t.check(:'upper');
\set ph `"$MINT" token 1 'header={"alg":"Ed25519ph","kid":"k1"}'`
select t.check(:'ph');
\set noalg `"$MINT" token 1 'header={"kid":"k1"}'`
select t.check(:'noalg');
\set algnum `"$MINT" token 1 'header={"alg":1,"kid":"k1"}'`
select t.check(:'algnum');
-- Algorithm before key: an unknown kid with a bad alg reports the algorithm.
\set hs_nokey `"$MINT" token 1 'header={"alg":"HS256","kid":"nope"}'`
select t.check(:'hs_nokey');
\set crit `"$MINT" token 1 'header={"alg":"EdDSA","kid":"k1","crit":["exp"]}'`
select t.check(:'crit');
\set at_jwt `"$MINT" token 1 'header={"alg":"EdDSA","kid":"k1","typ":"at+jwt"}'`
select t.check(:'at_jwt');
\set logout `"$MINT" token 1 'header={"alg":"EdDSA","kid":"k1","typ":"logout+jwt"}'`
select t.check(:'logout');
\set jwk `"$MINT" token 9 'header={"alg":"EdDSA","kid":"k1","jwk":{"kty":"OKP","crv":"Ed25519","x":"AAAA"}}'`
select t.check(:'jwk');
\set jku `"$MINT" token 1 'header={"alg":"EdDSA","kid":"k1","jku":"https://evil.example/jwks.json"}'`
select t.check(:'jku');
\set x5u `"$MINT" token 1 'header={"alg":"EdDSA","kid":"k1","x5u":"https://evil.example/cert.pem"}'`
select t.check(:'x5u');
\set x5c `"$MINT" token 1 'header={"alg":"EdDSA","kid":"k1","x5c":["MIIB"]}'`
select t.check(:'x5c');
rollback;
