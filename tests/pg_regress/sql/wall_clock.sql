-- exp is checked against the wall clock at verification time, not the transaction start:
-- a long transaction cannot keep an expired token alive, even one it already verified.
begin;
set local auth_jwt.leeway = 0;
\set short `"$MINT" token 1 exp=+2`
select t.check(:'short') as at_first;
select pg_sleep(3);
select t.check(:'short') as three_seconds_later;
rollback;
