-- The diagnostics are for operators: jwks_keys() shows key ids, dates and which rows hold
-- private key material, jwt_explain() how a token fares, stats() the backend's counters (behind a
-- transaction pooler, other clients' requests), stats_reset() erases them. PUBLIC may not run
-- them; the verifying functions stay open to every role.
select p.oid::regprocedure as function, has_function_privilege('app', p.oid, 'execute') as app_may_run
  from pg_proc p join pg_namespace n on n.oid = p.pronamespace
 where n.nspname = 'auth_jwt'
 order by p.oid::regprocedure::text;
begin;
set local role app;
select t.err('select * from auth_jwt.jwks_keys()') as jwks_keys;
select t.err($$select * from auth_jwt.jwt_explain('x')$$) as jwt_explain;
select t.err('select auth_jwt.stats_reset()') as stats_reset;
select t.err('select * from auth_jwt.stats()') as stats;
rollback;
-- The documented grant for an operator role.
begin;
create role ops nologin;
grant execute on function auth_jwt.jwks_keys(), auth_jwt.jwt_explain(text), auth_jwt.stats(), auth_jwt.stats_reset() to ops;
set local role ops;
select kid, status from auth_jwt.jwks_keys() order by kid;
select count(*) > 0 as explained from auth_jwt.jwt_explain('x');
select t.err('select auth_jwt.stats_reset()') as stats_reset;
select t.err('select * from auth_jwt.stats()') as stats;
rollback;
