-- auth_jwt.jwt_explain(token): one row per verification step, never an error for a bad token,
-- never the token, its signature or key material in a detail.
begin;
\set good `"$MINT" token 1`
\set forged_expired `"$MINT" token 2 kid=k1 exp=-600`
\set unknown `"$MINT" token 1 kid=gone uuid=-`
\set hs `"$MINT" token 1 'header={"alg":"HS256","kid":"k1"}'`
select step, ok, t.mask(detail) as detail from auth_jwt.jwt_explain(:'good');
select step, ok, t.mask(detail) as detail from auth_jwt.jwt_explain(:'forged_expired');
select step, ok, t.mask(detail) as detail from auth_jwt.jwt_explain(:'unknown');
select step, ok, t.mask(detail) as detail from auth_jwt.jwt_explain(:'hs');
select step, ok, t.mask(detail) as detail from auth_jwt.jwt_explain('not a token');
select count(*) filter (where ok is null) as not_checked from auth_jwt.jwt_explain(repeat('x', 100000));
-- As an operator role (jwt_explain is not PUBLIC: see operator_functions.sql), with a
-- configuration problem reported rather than raised.
create role ops nologin;
grant execute on function auth_jwt.jwt_explain(text) to ops;
set local auth_jwt.audience = '';
set local role ops;
select step, ok, t.mask(detail) as detail from auth_jwt.jwt_explain(:'good') where step in ('configuration', 'audience', 'signature');
-- No detail contains any 12-character piece of the token.
select count(*) as leaks from auth_jwt.jwt_explain(:'forged_expired') e,
       unnest(string_to_array(:'forged_expired', '.')) part
 where strpos(e.detail, left(part, 12)) > 0;
rollback;
