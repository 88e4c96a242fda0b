-- Compact JWS only: three base64url segments, no padding, no whitespace, canonical encoding,
-- and a size limit checked before any decoding.
begin;
\set ok `"$MINT" token 1`
select t.check(:'ok');
-- Segment count, and the other serializations.
select t.check('a.b');
select t.check('a.b.c.d');
select t.check('a.b.c.d.e');
select t.check('{"protected":"eyJhbGciOiJFZERTQSJ9","payload":"e30","signature":"AA"}');
select t.check('');
select t.check('..');
select t.check(split_part(:'ok', '.', 1) || '..' || split_part(:'ok', '.', 3));
-- Padding, whitespace and the standard alphabet in each segment.
select t.check(split_part(:'ok', '.', 1) || '=.' || split_part(:'ok', '.', 2) || '.' || split_part(:'ok', '.', 3));
select t.check(split_part(:'ok', '.', 1) || '.' || split_part(:'ok', '.', 2) || '.' || split_part(:'ok', '.', 3) || '==');
select t.check(' ' || :'ok');
select t.check(:'ok' || E'\n');
select t.check(replace(:'ok', '.', ' .'));
select t.check(split_part(:'ok', '.', 1) || '.' || split_part(:'ok', '.', 2) || '.+' || substr(split_part(:'ok', '.', 3), 2));
select t.check('/' || substr(:'ok', 2));
-- Canonical encoding: the 64-byte signature ends in two characters whose last 4 bits are unused.
-- Setting one of them changes no byte, yet must be refused.
select t.check(left(:'ok', length(:'ok') - 1) ||
  substr('ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_',
         strpos('ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_', right(:'ok', 1)) + 1, 1));
-- Non-ASCII and NUL-free garbage.
select t.check('ëyJ.a.b');
-- Size: the limit (default 16 KiB) applies before any decoding, even to garbage.
select t.check(repeat('x', 16385));
select t.check(repeat('a.', 100000) || 'a');
\set big `"$MINT" token 1 pad=16000`
select length(:'big') > 16384 as over_default, t.check(:'big');
set local auth_jwt.max_token_size = '32kB';
select t.check(:'big');
reset auth_jwt.max_token_size;
select t.check(repeat('A', 1024 * 1024));
rollback;
