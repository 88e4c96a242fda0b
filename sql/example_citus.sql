-- The example app (sql/example_app.sql) scaled out with Citus. Run on the coordinator, after
-- sql/better_auth_schema.sql (or Better Auth's migrations) and sql/example_app.sql, once the
-- workers are added (citus_add_node). Tested by tests/citus; copy what you need.
--
-- Row-level security on a distributed table runs on the workers, shard by shard, so every node
-- needs Better Auth's keys (and, with auth_jwt.require_session, its sessions): they become
-- reference tables, a full copy on every node.

-- 1. Better Auth's tables as reference tables. auth_jwt's key-change and session-change triggers
--    are dropped first (Citus distributes no table that has triggers) and put back on every
--    node's copy after.
drop trigger if exists auth_jwt_key_change on public.jwks;
drop trigger if exists auth_jwt_session_change on public.session;
select create_reference_table('public.user');
select create_reference_table('public.session');
select create_reference_table('public.account');
select create_reference_table('public.verification');
select create_reference_table('public.jwks');
select * from auth_jwt.watch_key_table();
select * from auth_jwt.watch_session_table();

-- 2. tasks distributed by user_id: its primary key must include the distribution column. The
--    policies of example_app.sql go with it: they call auth_jwt.jwt_claim_uuid() unwrapped (Citus
--    refuses policies with subqueries, so not `(select auth_jwt.jwt_claim_uuid())`).
alter table public.tasks drop constraint tasks_pkey;
alter table public.tasks add primary key (user_id, id);
select create_distributed_table('public.tasks', 'user_id');

-- 3. Citus connects to the workers as the role running the query, so the roles a request
--    switches to must be able to log in there (and authenticate: pg_hba.conf, .pgpass or
--    pg_dist_authinfo between the nodes). Citus propagates ALTER ROLE to the workers.
alter role anon login;
alter role authenticated login;
