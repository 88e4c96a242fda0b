-- Header and payload are UTF-8 JSON objects with no duplicate members, even when the token
-- carries a valid signature over them.
begin;
\set h_dup `"$MINT" token 1 'header={"alg":"EdDSA","kid":"k1","alg":"none"}'`
select t.check(:'h_dup');
\set h_dup2 `"$MINT" token 1 'header={"alg":"none","kid":"k1","alg":"EdDSA"}'`
select t.check(:'h_dup2');
\set p_dup `"$MINT" token 1 'payload={"sub":"user1","exp":9999999999,"iss":"https://app.example.com","aud":"https://app.example.com","sub":"admin"}'`
select t.check(:'p_dup');
\set p_dup_nested `"$MINT" token 1 'payload={"exp":9999999999,"iss":"https://app.example.com","aud":"https://app.example.com","x":{"a":1,"a":2}}'`
select t.check(:'p_dup_nested');
\set h_arr `"$MINT" token 1 'header=["EdDSA"]'`
select t.check(:'h_arr');
\set p_arr `"$MINT" token 1 'payload=[1,2,3]'`
select t.check(:'p_arr');
\set p_text `"$MINT" token 1 'payload=Example of Ed25519 signing'`
select t.check(:'p_text');
\set p_nul `"$MINT" token 1 'payload={"exp":9999999999,"iss":"https://app.example.com","aud":"https://app.example.com","sub":"a\u0000b"}'`
select t.check(:'p_nul');
\set p_surrogate `"$MINT" token 1 'payload={"exp":9999999999,"iss":"https://app.example.com","aud":"https://app.example.com","sub":"\ud800"}'`
select t.check(:'p_surrogate');
\set p_trailing `"$MINT" token 1 'payload={"exp":9999999999,"iss":"https://app.example.com","aud":"https://app.example.com"} x'`
select t.check(:'p_trailing');
-- Member names of equal length that share their first 8 bytes, byte 8 inside a character: two
-- different names (the header parses; the token verifies), or one name twice (a duplicate).
\set h_prefix `"$MINT" token 1 'header={"alg":"EdDSA","kid":"k1","1234567\u00e9":1,"1234567\u00e8":2}'`
select t.check(:'h_prefix');
\set h_prefix_dup `"$MINT" token 1 'header={"alg":"EdDSA","kid":"k1","1234567\u00e9":1,"1234567\u00e9":2}'`
select t.check(:'h_prefix_dup');
-- The claims come back exactly as signed: key order aside, numbers keep their precision.
\set precise `"$MINT" token 1 'payload={"exp":9999999999,"iss":"https://app.example.com","aud":"https://app.example.com","big":123456789012345678901234567890,"f":1.50,"s":"\u00e9"}'`
select auth_jwt.jwt_verify(:'precise');
rollback;
