-- Shared fixtures for every regression test (run first, committed).
-- Tokens come from the test-only minter: `$MINT token SEED name=value ...` (see
-- crates/auth_jwt_core/examples/mint.rs); seed N signs with key row 'kN'.
\set VERBOSITY default
-- Better Auth 1.7's jwks table, exactly as its migration creates it.
CREATE TABLE public.jwks ("id" text not null primary key, "publicKey" text not null,
  "privateKey" text not null, "createdAt" timestamptz not null, "expiresAt" timestamptz,
  "alg" text, "crv" text);
\set jwk1 `"$MINT" jwk 1`
\set jwk2 `"$MINT" jwk 2`
INSERT INTO public.jwks VALUES
  ('k1', :'jwk1', '"encrypted-private-key"', now(), NULL, 'EdDSA', 'Ed25519'),
  ('k2', :'jwk2', '"encrypted-private-key"', now(), NULL, NULL, NULL);
CREATE EXTENSION auth_jwt;
SELECT * FROM auth_jwt.watch_key_table();
DO $$ BEGIN
  EXECUTE format('ALTER DATABASE %I SET auth_jwt.issuer = %L', current_database(), 'https://app.example.com');
  EXECUTE format('ALTER DATABASE %I SET auth_jwt.audience = %L', current_database(), 'https://app.example.com');
END $$;
-- An application role: no superuser, no privilege on jwks.
CREATE ROLE app NOLOGIN;
-- t.check(token): 'ok sub=...' or 'SQLSTATE message | detail', with times, durations and
-- long numbers masked (t.mask) so that time-dependent details compare stably.
CREATE SCHEMA t;
GRANT USAGE ON SCHEMA t TO PUBLIC;
CREATE FUNCTION t.mask(det text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT regexp_replace(regexp_replace(regexp_replace(coalesce(det, ''),
    '\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ', 'T', 'g'), '\m[0-9]+s\M', 'Ns', 'g'), '\m[0-9]{3,}\M', 'N', 'g')
$$;
CREATE FUNCTION t.check(tok text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE c jsonb; st text; msg text; det text;
BEGIN
  c := auth_jwt.jwt_verify(tok);
  RETURN 'ok sub=' || coalesce(c->>'sub', '-');
EXCEPTION WHEN others THEN
  GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL;
  RETURN st || ' ' || msg || ' | ' || t.mask(det);
END $$;
-- t.err(sql): the error a statement raises, in the same format ('ok' if none).
CREATE FUNCTION t.err(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE st text; msg text; det text;
BEGIN
  EXECUTE q;
  RETURN 'ok';
EXCEPTION WHEN others THEN
  GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL;
  RETURN st || ' ' || msg || ' | ' || t.mask(det);
END $$;
