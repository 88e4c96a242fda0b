COMMENT ON SCHEMA auth_jwt IS 'auth_jwt: Better Auth JWT verification for row-level security';
GRANT USAGE ON SCHEMA auth_jwt TO PUBLIC;

-- The verifying functions (C, src/functions.rs) and what is hand-written in SQL.
-- STABLE: they read the clock, settings and a table, so never IMMUTABLE; within a statement
-- they return the same answer, which lets an index serve `user_id = auth_jwt.jwt_claim_uuid()`.
-- The functions of an explicit token are PARALLEL SAFE. Those of the request's token are
-- PARALLEL RESTRICTED: the pooler rule needs the GUC stack of the session that set the token,
-- and parallel workers receive the setting's value but not that stack, so a worker could not
-- tell SET LOCAL from a token left behind by a previous client (tests/integration/test_parallel.py).
-- A policy written `user_id = (SELECT auth_jwt.jwt_claim_uuid())` is evaluated once, in the
-- leader, and the scan below it can still run in parallel.

CREATE FUNCTION auth_jwt.jwt_verify(token text) RETURNS jsonb
    LANGUAGE c STRICT STABLE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'auth_jwt_verify';
COMMENT ON FUNCTION auth_jwt.jwt_verify(text) IS
    'The claims of a Better Auth JWT, exactly as signed, after checking its signature (EdDSA, ES256, ES512, RS256 or PS256, as its key decides) against auth_jwt.jwks_table and its exp, nbf, iat, iss and aud; raises SQLSTATE 28000 otherwise';

CREATE FUNCTION auth_jwt.jwt_claims() RETURNS jsonb
    LANGUAGE c STABLE PARALLEL RESTRICTED
    AS 'MODULE_PATHNAME', 'auth_jwt_claims';
COMMENT ON FUNCTION auth_jwt.jwt_claims() IS
    'The verified claims of the request''s token (auth_jwt.token, else the bearer token in request.headers); NULL when there is none';

CREATE FUNCTION auth_jwt.jwt_claim_uuid() RETURNS uuid
    LANGUAGE c STABLE PARALLEL RESTRICTED
    AS 'MODULE_PATHNAME', 'auth_jwt_claim_uuid';
COMMENT ON FUNCTION auth_jwt.jwt_claim_uuid() IS
    'The uuid claim (auth_jwt.uuid_claim) of the request''s verified token; NULL when there is no token. For policies: USING (user_id = auth_jwt.jwt_claim_uuid())';

CREATE FUNCTION auth_jwt.jwt_claim_uuid(token text) RETURNS uuid
    LANGUAGE c STRICT STABLE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'auth_jwt_claim_uuid_of';
COMMENT ON FUNCTION auth_jwt.jwt_claim_uuid(text) IS
    'The uuid claim (auth_jwt.uuid_claim) of the given token, after verifying it';

CREATE FUNCTION auth_jwt.jwt_claim_sub() RETURNS text
    LANGUAGE c STABLE PARALLEL RESTRICTED
    AS 'MODULE_PATHNAME', 'auth_jwt_claim_sub';
COMMENT ON FUNCTION auth_jwt.jwt_claim_sub() IS
    'Better Auth''s user id (the sub claim) of the request''s verified token; NULL when there is no token';

CREATE FUNCTION auth_jwt.jwt_claim_sub(token text) RETURNS text
    LANGUAGE c STRICT STABLE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'auth_jwt_claim_sub_of';
COMMENT ON FUNCTION auth_jwt.jwt_claim_sub(text) IS
    'Better Auth''s user id (the sub claim) of the given token, after verifying it';

-- PostgREST's db-pre-request: a bad token becomes HTTP 401 (SQLSTATE PT401) with the same
-- safe message; an anonymous request passes. Configuration errors pass through unchanged.
CREATE FUNCTION auth_jwt.pre_request() RETURNS void
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    msg text;
    det text;
BEGIN
    PERFORM auth_jwt.jwt_claims();
EXCEPTION WHEN invalid_authorization_specification THEN
    GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL;
    RAISE SQLSTATE 'PT401' USING MESSAGE = msg, DETAIL = det;
END
$$;
COMMENT ON FUNCTION auth_jwt.pre_request() IS
    'For PostgREST db-pre-request: raises PT401 (HTTP 401) when the request carries an invalid token';

CREATE FUNCTION auth_jwt.on_key_change() RETURNS trigger
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'auth_jwt_on_key_change';
COMMENT ON FUNCTION auth_jwt.on_key_change() IS
    'Statement trigger on the key table: tells every backend''s key cache to reload';

REVOKE ALL ON FUNCTION auth_jwt.watch_key_table() FROM PUBLIC;
REVOKE ALL ON FUNCTION auth_jwt.on_key_change() FROM PUBLIC;
-- Diagnostics are for operators: key ids, dates and which rows hold private material, or
-- another backend's counters reset, are nobody else's business. Grant them to an operator role:
--   GRANT EXECUTE ON FUNCTION auth_jwt.jwks_keys(), auth_jwt.jwt_explain(text), auth_jwt.stats_reset() TO ops;
REVOKE ALL ON FUNCTION auth_jwt.jwks_keys() FROM PUBLIC;
REVOKE ALL ON FUNCTION auth_jwt.jwt_explain(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION auth_jwt.stats_reset() FROM PUBLIC;

-- Watch the configured key table now if it exists; otherwise say how to do it later
-- (a WARNING: extension scripts run with client_min_messages at warning).
DO $$
BEGIN
    PERFORM auth_jwt.watch_key_table();
EXCEPTION
    WHEN undefined_table THEN
        RAISE WARNING 'auth_jwt: key table % does not exist yet', pg_catalog.current_setting('auth_jwt.jwks_table')
            USING HINT = 'After Better Auth''s migrations create it, run SELECT auth_jwt.watch_key_table(); as a superuser.';
    WHEN duplicate_object THEN
        DECLARE msg text; hint text;
        BEGIN
            GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, hint = PG_EXCEPTION_DETAIL;
            RAISE WARNING 'auth_jwt: %', msg USING HINT = hint;
        END;
END
$$;
