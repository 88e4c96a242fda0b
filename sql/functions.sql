COMMENT ON SCHEMA auth_jwt IS 'auth_jwt: Better Auth JWT verification for row-level security';
GRANT USAGE ON SCHEMA auth_jwt TO PUBLIC;

-- The verifying functions (C, src/functions.rs) and what is hand-written in SQL.
-- STABLE: they read the clock, settings and a table, so never IMMUTABLE; within a statement
-- they return the same answer, which lets an index serve `user_id = auth_jwt.jwt_claim_uuid()`.
-- Every verifying function is PARALLEL RESTRICTED. Those of the request's token because the
-- pooler rule needs the GUC stack of the session that set the token, and parallel workers
-- receive the setting's value but not that stack, so a worker could not tell SET LOCAL from a
-- token left behind by a previous client (tests/integration/test_parallel.py). Those of an
-- explicit token because, with auth_jwt.jwks_url and no shared_preload_libraries, every worker
-- of every parallel query would fetch the keys anew (workers start with empty caches); the label
-- is in the catalog, while preloading is a server setting. A policy written
-- `user_id = (SELECT auth_jwt.jwt_claim_uuid())` is evaluated once, in the leader, and the scan
-- below it can still run in parallel. With keys from the table, or from jwks_url on a server
-- that preloads auth_jwt (workers then read the server's shared document), a DBA may re-mark the
-- explicit-token functions PARALLEL SAFE for bulk verification (tested); with jwks_url and no
-- preload, workers refuse to fetch.

CREATE FUNCTION auth_jwt.jwt_verify(token text) RETURNS jsonb
    LANGUAGE c STRICT STABLE PARALLEL RESTRICTED
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
    LANGUAGE c STRICT STABLE PARALLEL RESTRICTED
    AS 'MODULE_PATHNAME', 'auth_jwt_claim_uuid_of';
COMMENT ON FUNCTION auth_jwt.jwt_claim_uuid(text) IS
    'The uuid claim (auth_jwt.uuid_claim) of the given token, after verifying it';

CREATE FUNCTION auth_jwt.jwt_claim_sub() RETURNS text
    LANGUAGE c STABLE PARALLEL RESTRICTED
    AS 'MODULE_PATHNAME', 'auth_jwt_claim_sub';
COMMENT ON FUNCTION auth_jwt.jwt_claim_sub() IS
    'Better Auth''s user id (the sub claim) of the request''s verified token; NULL when there is no token';

CREATE FUNCTION auth_jwt.jwt_claim_sub(token text) RETURNS text
    LANGUAGE c STRICT STABLE PARALLEL RESTRICTED
    AS 'MODULE_PATHNAME', 'auth_jwt_claim_sub_of';
COMMENT ON FUNCTION auth_jwt.jwt_claim_sub(text) IS
    'Better Auth''s user id (the sub claim) of the given token, after verifying it';

-- The role a request with a verified token runs as, for PostgREST (src/request_role.rs): with
-- auth_jwt.authenticated_role set, switches the transaction (SET LOCAL) from the role PostgREST set
-- for the request to that role, or to the one auth_jwt.role_claim_map assigns to the token's role
-- claim; never to a superuser, never inside SECURITY DEFINER, only where the login role could
-- SET ROLE itself. Returns the role, or NULL when nothing was switched.
CREATE FUNCTION auth_jwt.set_request_role() RETURNS text
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'auth_jwt_set_request_role';
COMMENT ON FUNCTION auth_jwt.set_request_role() IS
    'For auth_jwt.pre_request(): switches a request with a verified token to auth_jwt.authenticated_role (or the role auth_jwt.role_claim_map gives its role claim) for the transaction; returns it, or NULL';

-- PostgREST's db-pre-request: a bad token becomes HTTP 401 (SQLSTATE PT401) with the same
-- safe message; an anonymous request passes as it is; a verified one runs as
-- auth_jwt.authenticated_role when that is set. Configuration errors pass through unchanged.
CREATE FUNCTION auth_jwt.pre_request() RETURNS void
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    msg text;
    det text;
BEGIN
    PERFORM auth_jwt.jwt_claims();
    PERFORM auth_jwt.set_request_role();
EXCEPTION WHEN invalid_authorization_specification THEN
    GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL;
    RAISE SQLSTATE 'PT401' USING MESSAGE = msg, DETAIL = det;
END
$$;
COMMENT ON FUNCTION auth_jwt.pre_request() IS
    'For PostgREST db-pre-request: raises PT401 (HTTP 401) when the request carries an invalid token; switches a verified request to auth_jwt.authenticated_role when set';

CREATE FUNCTION auth_jwt.on_key_change() RETURNS trigger
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'auth_jwt_on_key_change';
COMMENT ON FUNCTION auth_jwt.on_key_change() IS
    'Row trigger on the tables under the key table: tells every backend''s key cache to reload';

CREATE FUNCTION auth_jwt.on_session_change() RETURNS trigger
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'auth_jwt_on_session_change';
COMMENT ON FUNCTION auth_jwt.on_session_change() IS
    'Row trigger on the session table: tells every backend to drop the sessions it keeps when a change can end one (not a sign-in, not a refresh)';

-- Push mode, for databases that may not open outbound connections: a JWKS document handed to
-- import_jwks() (e.g. fetched from Better Auth's /api/auth/jwks by a deploy job) is stored here,
-- and the key loader reads this table like Better Auth's own, with the same trigger:
--   ALTER DATABASE app SET auth_jwt.jwks_table = 'auth_jwt.jwks';
CREATE TABLE auth_jwt.jwks (
    id text PRIMARY KEY,
    "publicKey" text NOT NULL,
    "createdAt" timestamptz NOT NULL DEFAULT pg_catalog.now(),
    "expiresAt" timestamptz,
    alg text,
    crv text
);
COMMENT ON TABLE auth_jwt.jwks IS
    'Keys imported with auth_jwt.import_jwks(jwks); read when auth_jwt.jwks_table = ''auth_jwt.jwks''';
SELECT pg_catalog.pg_extension_config_dump('auth_jwt.jwks', '');
REVOKE ALL ON auth_jwt.jwks FROM PUBLIC;
CREATE TRIGGER auth_jwt_key_change AFTER INSERT OR UPDATE OR DELETE ON auth_jwt.jwks
    FOR EACH ROW EXECUTE FUNCTION auth_jwt.on_key_change();
ALTER TABLE auth_jwt.jwks ENABLE ALWAYS TRIGGER auth_jwt_key_change;

CREATE FUNCTION auth_jwt.import_jwks(jwks jsonb) RETURNS TABLE (kid text, action text)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    entry jsonb;
    k text;
    old text;
    kids text[] := '{}';
BEGIN
    IF jsonb_typeof(jwks) IS DISTINCT FROM 'object' OR jsonb_typeof(jwks -> 'keys') IS DISTINCT FROM 'array' THEN
        RAISE EXCEPTION 'auth_jwt.import_jwks: not a JWKS document'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Expected {"keys": [...]}, as Better Auth serves it at /api/auth/jwks.';
    END IF;
    FOR entry IN SELECT e FROM jsonb_array_elements(jwks -> 'keys') e LOOP
        IF jsonb_typeof(entry) IS DISTINCT FROM 'object' OR jsonb_typeof(entry -> 'kid') IS DISTINCT FROM 'string' THEN
            RAISE EXCEPTION 'auth_jwt.import_jwks: every key needs a kid'
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'Tokens name their key by kid; an entry without one could never be used.';
        END IF;
        k := entry ->> 'kid';
        -- A private JWK pushed by mistake is refused before it reaches the table (and its dumps).
        IF entry ?| ARRAY['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'] THEN
            RAISE EXCEPTION 'auth_jwt.import_jwks: key "%" contains private key material', k
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'Nothing was imported. Import the public keys only, as Better Auth serves them at /api/auth/jwks.',
                      HINT = 'Treat that private key as exposed and rotate it.';
        END IF;
        IF k = ANY (kids) THEN
            RAISE EXCEPTION 'auth_jwt.import_jwks: kid "%" appears twice', k
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'A kid must name one key; nothing was imported.';
        END IF;
        kids := kids || k;
    END LOOP;
    -- The removals below are decided by what this import sees after it waited for concurrent
    -- imports. A REPEATABLE READ or SERIALIZABLE snapshot predates that wait: it would miss a key
    -- another import just added and leave it in place although this document lacks it.
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'auth_jwt.import_jwks must run at READ COMMITTED'
            USING ERRCODE = 'invalid_transaction_state',
                  DETAIL = format('This transaction is %s: its snapshot could miss keys that a concurrent import added, and they would stay.',
                                  upper(current_setting('transaction_isolation'))),
                  HINT = 'Call it in a transaction of its own (autocommit) or one begun with ISOLATION LEVEL READ COMMITTED.';
    END IF;
    -- One import at a time; the key loader's reads are not blocked.
    LOCK TABLE auth_jwt.jwks IN SHARE ROW EXCLUSIVE MODE;
    FOR k IN SELECT j.id FROM auth_jwt.jwks j WHERE j.id <> ALL (kids) ORDER BY j.id LOOP
        DELETE FROM auth_jwt.jwks j WHERE j.id = k;
        kid := k;
        action := 'removed';
        RETURN NEXT;
    END LOOP;
    FOR entry IN SELECT e FROM jsonb_array_elements(jwks -> 'keys') e LOOP
        k := entry ->> 'kid';
        SELECT j."publicKey" INTO old FROM auth_jwt.jwks j WHERE j.id = k;
        IF NOT FOUND THEN
            INSERT INTO auth_jwt.jwks (id, "publicKey", alg, crv) VALUES (k, entry::text, entry ->> 'alg', entry ->> 'crv');
            action := 'added';
        ELSIF old::jsonb = entry THEN
            action := 'unchanged';
        ELSE
            UPDATE auth_jwt.jwks j SET "publicKey" = entry::text, alg = entry ->> 'alg', crv = entry ->> 'crv', "createdAt" = now()
             WHERE j.id = k;
            action := 'replaced';
        END IF;
        kid := k;
        RETURN NEXT;
    END LOOP;
END
$$;
COMMENT ON FUNCTION auth_jwt.import_jwks(jsonb) IS
    'Replace the keys in auth_jwt.jwks with a JWKS document ({"keys": [...]}); returns each kid and whether it was added, replaced, removed or unchanged; SELECT * FROM auth_jwt.jwks_keys() shows what auth_jwt makes of them';
REVOKE ALL ON FUNCTION auth_jwt.import_jwks(jsonb) FROM PUBLIC;


REVOKE ALL ON FUNCTION auth_jwt.watch_key_table() FROM PUBLIC;
REVOKE ALL ON FUNCTION auth_jwt.on_key_change() FROM PUBLIC;
REVOKE ALL ON FUNCTION auth_jwt.watch_session_table() FROM PUBLIC;
REVOKE ALL ON FUNCTION auth_jwt.on_session_change() FROM PUBLIC;
-- Diagnostics are for operators: key ids, dates and which rows hold private material, a
-- backend's counters (behind a transaction pooler, other clients' requests: cached tokens, sign-
-- outs refused, fetches), or resetting them, are nobody else's business. Grant them to an
-- operator role:
--   GRANT EXECUTE ON FUNCTION auth_jwt.jwks_keys(), auth_jwt.jwt_explain(text), auth_jwt.stats(), auth_jwt.stats_reset() TO ops;
REVOKE ALL ON FUNCTION auth_jwt.jwks_keys() FROM PUBLIC;
REVOKE ALL ON FUNCTION auth_jwt.jwt_explain(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION auth_jwt.stats() FROM PUBLIC;
REVOKE ALL ON FUNCTION auth_jwt.stats_reset() FROM PUBLIC;

-- Watch the configured key and session tables now if they exist; otherwise say how to do it
-- later for the key table (a WARNING: extension scripts run with client_min_messages at
-- warning). The session table is skipped quietly: nothing reads it until
-- auth_jwt.require_session is on, and a WARNING then says what to run.
DO $$
DECLARE
    kind text;
    msg text;
    hint text;
BEGIN
    FOREACH kind IN ARRAY ARRAY['key', 'session'] LOOP
        BEGIN
            EXECUTE pg_catalog.format('SELECT auth_jwt.watch_%s_table()', kind);
        EXCEPTION
            WHEN undefined_table THEN
                IF kind = 'key' THEN
                    RAISE WARNING 'auth_jwt: key table % does not exist yet', pg_catalog.current_setting('auth_jwt.jwks_table')
                        USING HINT = 'After Better Auth''s migrations create it, run SELECT auth_jwt.watch_key_table(); as a superuser.';
                END IF;
            WHEN object_not_in_prerequisite_state THEN
                -- On a Citus worker: the table is a Citus table this node holds no copy of.
                IF kind = 'key' THEN
                    GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, hint = PG_EXCEPTION_HINT;
                    RAISE WARNING '%', msg USING HINT = hint;
                END IF;
            WHEN duplicate_object THEN
                GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, hint = PG_EXCEPTION_DETAIL;
                RAISE WARNING 'auth_jwt: %', msg USING HINT = hint;
        END;
    END LOOP;
END
$$;
