-- auth_jwt.require_session keeps a live session between transactions while the session table is
-- watched, and drops what it keeps when a change can end a session: a DELETE, an UPDATE of
-- "userId", of id, or of "expiresAt" to an earlier time, TRUNCATE. A sign-in's INSERT and Better
-- Auth's refresh (a later "expiresAt") drop nothing. session_lookups counts reads of the table.
create table public.session ("id" text not null primary key, "expiresAt" timestamptz not null,
  "token" text not null unique, "createdAt" timestamptz not null, "updatedAt" timestamptz not null,
  "ipAddress" text, "userAgent" text, "userId" text not null);
insert into public.session values
  ('s1', now() + interval '1 day', 'secret-token-of-s1', now(), now(), null, null, 'user1'),
  ('s2', now() + interval '1 day', 'secret-token-of-s2', now(), now(), null, null, 'user1');
\set s1 `"$MINT" token 1 'claims={"sid":"s1"}'`
\set s2 `"$MINT" token 1 'claims={"sid":"s2"}'`
\set s3 `"$MINT" token 1 'claims={"sid":"s3"}'`
set auth_jwt.require_session = on;
select * from auth_jwt.watch_session_table();
select * from auth_jwt.watch_session_table();
select tgname, tgenabled from pg_trigger where tgrelid = 'public.session'::regclass;
select auth_jwt.stats_reset();
-- Looked up once, then kept: later transactions read nothing.
select t.check(:'s1') as first;
select t.check(:'s1') as kept, t.check(:'s2') as other;
select t.check(:'s1') as kept_again;
select session_lookups from auth_jwt.stats();
-- A sign-in and a refresh drop nothing.
insert into public.session values ('s3', now() + interval '1 day', 'secret-token-of-s3', now(), now(), null, null, 'user1');
update public.session set "expiresAt" = "expiresAt" + interval '7 days', "updatedAt" = now() where id = 's1';
update public.session set "ipAddress" = '203.0.113.9' where id = 's2';
select t.check(:'s1') as after_refresh, t.check(:'s2') as after_other_column;
select session_lookups from auth_jwt.stats();
-- A session ended early: refused at the next transaction; the others stay kept (the
-- invalidation names the one session it ends).
update public.session set "expiresAt" = now() - interval '1 second' where id = 's1';
select t.check(:'s1') as ended_early, t.check(:'s2') as still_kept;
select session_lookups from auth_jwt.stats();
-- Given to another user.
update public.session set "userId" = 'user2' where id = 's2';
select t.check(:'s2') as another_user;
-- Sign-out.
select t.check(:'s3') as signed_in;
delete from public.session where id = 's3';
select t.check(:'s3') as signed_out;
-- TRUNCATE sends its own invalidation.
update public.session set "userId" = 'user1', "expiresAt" = now() + interval '1 day';
select t.check(:'s1') as live_again, t.check(:'s2') as live_again_too;
truncate public.session;
select t.check(:'s1') as truncated;
-- A session that expires while kept is refused at once, by the clock, with no invalidation.
insert into public.session values ('s1', now() + interval '1.5 seconds', 'secret-token-of-s1', now(), now(), null, null, 'user1');
select t.check(:'s1') as live_for_a_moment;
select pg_sleep(2);
select t.check(:'s1') as expired_while_kept;
-- Without the trigger nothing is kept, and a WARNING says so (once).
insert into public.session values ('s2', now() + interval '1 day', 'secret-token-of-s2', now(), now(), null, null, 'user1');
drop trigger auth_jwt_session_change on public.session;
select auth_jwt.stats_reset();
select t.check(:'s2') as unwatched;
select t.check(:'s2') as unwatched_again;
select session_lookups from auth_jwt.stats();
-- Nor through a view: a change of any column of what it reads can end a session.
select * from auth_jwt.watch_session_table();
create schema auth;
create view auth.live_session as select * from public.session where "ipAddress" is distinct from 'blocked';
set auth_jwt.session_table = 'auth.live_session';
select * from auth_jwt.watch_session_table();
select t.check(:'s2') as through_a_view;
update public.session set "ipAddress" = 'blocked' where id = 's2';
select t.check(:'s2') as blocked_through_the_view;
reset auth_jwt.session_table;
reset auth_jwt.require_session;
drop schema auth cascade;
drop table public.session;
