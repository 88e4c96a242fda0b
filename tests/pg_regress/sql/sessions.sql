-- auth_jwt.require_session: a token passes only while the Better Auth session its sid names
-- exists, has not expired and belongs to its sub. Statements here commit (the answer is
-- remembered per transaction); everything is dropped and reset at the end.
-- Better Auth's session table, exactly as its migration creates it.
create table public.session ("id" text not null primary key, "expiresAt" timestamptz not null,
  "token" text not null unique, "createdAt" timestamptz not null, "updatedAt" timestamptz not null,
  "ipAddress" text, "userAgent" text, "userId" text not null);
insert into public.session values
  ('s1', now() + interval '1 day', 'secret-token-of-s1', now(), now(), null, null, 'user1'),
  ('s1b', now() + interval '1 day', 'secret-token-of-s1b', now(), now(), null, null, 'user1'),
  ('s2', now() + interval '1 day', 'secret-token-of-s2', now(), now(), null, null, 'user2'),
  ('s-expired', now() - interval '1 minute', 'secret-token-of-s-expired', now(), now(), null, null, 'user1');
\set s1 `"$MINT" token 1 'claims={"sid":"s1"}'`
\set s1b `"$MINT" token 1 'claims={"sid":"s1b"}'`
\set nosid `"$MINT" token 1`
\set gone `"$MINT" token 1 'claims={"sid":"s-gone"}'`
\set expired `"$MINT" token 1 'claims={"sid":"s-expired"}'`
\set foreign `"$MINT" token 1 'claims={"sid":"s2"}'`
\set by_token `"$MINT" token 1 'claims={"sid":"secret-token-of-s1"}'`
\set numeric `"$MINT" token 1 'claims={"sid":5}'`
\set nosub `"$MINT" token 1 sub=- 'claims={"sid":"s1"}'`
-- Off (the default): exactly as without sessions.
select t.check(:'nosid') as nosid, t.check(:'gone') as gone;
set auth_jwt.require_session = on;
select t.check(:'s1') as live;
select t.check(:'nosid') as nosid;
select t.check(:'numeric') as numeric_sid;
select t.check(:'gone') as gone;
select t.check(:'expired') as expired;
select t.check(:'foreign') as another_users_session;
select t.check(:'nosub') as no_sub;
-- The session's token column is a bearer credential: never read, so it names no session.
select t.check(:'by_token') as sid_is_a_session_token;
-- Sign-out (Better Auth deletes the row) refuses the token at the next transaction, cached or
-- not; another session of the same user keeps working.
delete from public.session where id = 's1';
select t.check(:'s1') as signed_out, t.check(:'s1b') as other_session;
-- Revoked then recreated under the same id: live again (the answer was not kept).
insert into public.session values ('s1', now() + interval '1 day', 'secret-token-of-s1', now(), now(), null, null, 'user1');
select t.check(:'s1') as recreated;
-- At most one lookup per session per transaction, for the request token on every row too.
select auth_jwt.stats_reset();
begin;
select set_config('auth_jwt.token', :'s1', true);
select count(*) filter (where auth_jwt.jwt_claim_sub() = 'user1') as rows_seen from generate_series(1, 1000);
select t.check(:'s1') as explicit, t.check(:'s1') as again, t.check(:'s1b') as second_session;
select session_lookups from auth_jwt.stats();
commit;
select t.check(:'s1') as next_transaction;
select session_lookups from auth_jwt.stats();
-- The calling role needs no privilege on the session table.
set role app;
select has_table_privilege('public.session', 'select') as app_can_read, t.check(:'s1') as as_app,
       t.check(:'gone') as gone_as_app;
-- Nor can it switch the check off, or point it elsewhere.
select t.err('set auth_jwt.require_session = off') as set_off;
select t.err($$select set_config('auth_jwt.session_table', 'public.fake', true)$$) as redirect;
select current_setting('auth_jwt.require_session') as still_on;
reset role;
-- jwt_explain shows the step.
select step, ok, t.mask(detail) as detail from auth_jwt.jwt_explain(:'s1') where step = 'session';
select step, ok, t.mask(detail) as detail from auth_jwt.jwt_explain(:'gone') where step = 'session';
select step, ok, t.mask(detail) as detail from auth_jwt.jwt_explain(:'nosid') where step = 'session';
-- A renamed table served through a view, with uuid ids and "expiresAt" without time zone,
-- which is read as UTC whatever the caller's TimeZone.
create schema auth;
create table auth.sessions (sid uuid primary key, owner text not null, ends timestamp not null);
insert into auth.sessions values
  ('0b6c1a8e-4d3f-4a5b-9c7d-1e2f3a4b5c6d', 'user1', (now() at time zone 'UTC') + interval '1 minute'),
  ('1b6c1a8e-4d3f-4a5b-9c7d-1e2f3a4b5c6d', 'user1', (now() at time zone 'UTC') - interval '1 minute');
create view auth.session as select sid as id, owner as "userId", ends as "expiresAt" from auth.sessions;
set auth_jwt.session_table = 'auth.session';
\set uuid_live `"$MINT" token 1 'claims={"sid":"0b6c1a8e-4d3f-4a5b-9c7d-1e2f3a4b5c6d"}'`
\set uuid_expired `"$MINT" token 1 'claims={"sid":"1b6c1a8e-4d3f-4a5b-9c7d-1e2f3a4b5c6d"}'`
set timezone = 'Pacific/Kiritimati';
select t.check(:'uuid_live') as live_at_utc_plus_14;
set timezone = 'America/Adak';
select t.check(:'uuid_expired') as expired_at_utc_minus_10;
reset timezone;
select t.check(:'s1') as not_a_uuid;
\set urn_sid `"$MINT" token 1 'claims={"sid":"urn:uuid:0b6c1a8e-4d3f-4a5b-9c7d-1e2f3a4b5c6d"}'`
select t.check(:'urn_sid') as only_the_canonical_form;
-- "expiresAt" must be a point in time, not text a DateStyle could read two ways.
create view auth.text_session as select id::text as id, "userId", "expiresAt"::text as "expiresAt" from auth.session;
set auth_jwt.session_table = 'auth.text_session';
select t.check(:'s1') as text_expires_at;
-- Integer ids.
create table auth.int_sessions (id bigint primary key, "userId" text, "expiresAt" timestamptz);
insert into auth.int_sessions values (42, 'user1', now() + interval '1 hour');
set auth_jwt.session_table = 'auth.int_sessions';
\set int_sid `"$MINT" token 1 'claims={"sid":"42"}'`
select t.check(:'int_sid') as integer_id, t.check(:'s1') as not_an_integer;
-- Configuration errors say what to fix.
set auth_jwt.session_table = 'session';
select t.check(:'s1') as unqualified;
set auth_jwt.session_table = 'public.no_such_table';
select t.check(:'s1') as missing;
create table auth.bad (id text primary key, "userId" text);
set auth_jwt.session_table = 'auth.bad';
select t.check(:'s1') as missing_column;
create table auth.bad_id (id jsonb, "userId" text, "expiresAt" timestamptz);
set auth_jwt.session_table = 'auth.bad_id';
select t.check(:'s1') as id_type;
-- A different claim name.
reset auth_jwt.session_table;
set auth_jwt.session_claim = 'session_id';
\set other_claim `"$MINT" token 1 'claims={"session_id":"s1"}'`
select t.check(:'other_claim') as other_claim, t.check(:'s1') as sid_not_read;
reset auth_jwt.session_claim;
reset auth_jwt.require_session;
drop schema auth cascade;
drop table public.session;
select t.check(:'gone') as off_again;
