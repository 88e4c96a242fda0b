-- exp is required; exp, nbf and iat are NumericDates (any finite JSON number) checked against
-- the wall clock with auth_jwt.leeway (default 30 s): valid while now < exp + leeway, nbf and iat
-- not after now + leeway; iss must equal auth_jwt.issuer; aud must contain auth_jwt.audience;
-- '*' turns one check off; an empty setting is a configuration error.
begin;
\set ok `"$MINT" token 1`
select t.check(:'ok');
\set noexp `"$MINT" token 1 exp=-`
select t.check(:'noexp');
\set expired `"$MINT" token 1 exp=-100`
select t.check(:'expired');
\set in_leeway `"$MINT" token 1 exp=-20`
select t.check(:'in_leeway');
set local auth_jwt.leeway = 0;
select t.check(:'in_leeway');
-- At exp exactly the token has expired; a fractional exp is not rounded in the token's favour:
-- now + 0.5 may already have passed within the current second.
\set at_exp `"$MINT" token 1 exp=+0`
\set half `"$MINT" token 1 exp=+0.5`
\set later `"$MINT" token 1 exp=+5.5`
select t.check(:'at_exp') as at_exp, t.check(:'half') as half_second, t.check(:'later') as fractional_later;
reset auth_jwt.leeway;
\set nbf_future `"$MINT" token 1 nbf=+100`
select t.check(:'nbf_future');
\set nbf_leeway `"$MINT" token 1 nbf=+20`
select t.check(:'nbf_leeway');
\set iat_future `"$MINT" token 1 iat=+100`
select t.check(:'iat_future');
-- Type confusion.
\set exp_str `"$MINT" token 1 'exp="9999999999"'`
select t.check(:'exp_str');
\set exp_float `"$MINT" token 1 exp=9999999999.5`
select t.check(:'exp_float');
\set exp_exp `"$MINT" token 1 exp=1e10`
select t.check(:'exp_exp');
\set exp_neg `"$MINT" token 1 'claims={"exp":-1}'`
select t.check(:'exp_neg');
\set exp_huge `"$MINT" token 1 exp=99999999999999999999`
select t.check(:'exp_huge');
\set exp_null `"$MINT" token 1 exp=null`
select t.check(:'exp_null');
\set nbf_str `"$MINT" token 1 'nbf="0"'`
select t.check(:'nbf_str');
\set iat_bool `"$MINT" token 1 iat=true`
select t.check(:'iat_bool');
-- Claims must fit jsonb exactly as signed: a number beyond numeric's scale is malformed (28000).
\set tiny `"$MINT" token 1 'payload={"exp":9999999999,"iss":"https://app.example.com","aud":"https://app.example.com","x":1e-20000}'`
select t.check(:'tiny');
-- Issuer.
\set evil_iss `"$MINT" token 1 iss=https://evil.example.com`
select t.check(:'evil_iss');
\set slash_iss `"$MINT" token 1 iss=https://app.example.com/`
select t.check(:'slash_iss');
\set no_iss `"$MINT" token 1 iss=-`
select t.check(:'no_iss');
\set arr_iss `"$MINT" token 1 'claims={"iss":["https://app.example.com"]}'`
select t.check(:'arr_iss');
-- Audience: a string, or an array of strings that contains ours.
\set aud_arr `"$MINT" token 1 'claims={"aud":["https://other.example.com","https://app.example.com"]}'`
select t.check(:'aud_arr');
\set aud_other `"$MINT" token 1 aud=https://other.example.com`
select t.check(:'aud_other');
\set aud_nested `"$MINT" token 1 'claims={"aud":[["https://app.example.com"]]}'`
select t.check(:'aud_nested');
\set aud_num `"$MINT" token 1 'claims={"aud":1}'`
select t.check(:'aud_num');
\set no_aud `"$MINT" token 1 aud=-`
select t.check(:'no_aud');
\set sub_num `"$MINT" token 1 'claims={"sub":42}'`
select t.check(:'sub_num');
-- '*' turns one check off, explicitly.
set local auth_jwt.issuer = '*';
select t.check(:'evil_iss') as iss_off, t.check(:'aud_other') as aud_still_on;
set local auth_jwt.audience = '*';
select t.check(:'aud_other') as aud_off, t.check(:'no_aud') as no_aud_off;
-- Secure by default: an empty setting is a configuration error naming the setting.
set local auth_jwt.issuer = '';
select t.check(:'ok');
set local auth_jwt.issuer = '*';
set local auth_jwt.audience = '';
select t.check(:'ok');
rollback;
-- The same configuration error, as a client sees it (message, detail and hint).
begin;
set local auth_jwt.issuer = '';
select auth_jwt.jwt_verify(:'ok');
rollback;
