-- auth_jwt 0.3.0 -> 0.4.0. (Keep in step with what pgrx generates for src/stats.rs and with
-- sql/functions.sql; the upgrade test compares an upgraded database with a fresh install.)

-- stats() counts waits for a JWKS fetch that were cancelled (the request stays in flight), and is
-- for operators only: behind a transaction pooler a backend's counters describe other clients'
-- requests. Grant it to an operator role:
--   GRANT EXECUTE ON FUNCTION auth_jwt.stats() TO ops;
DROP FUNCTION auth_jwt.stats();
CREATE FUNCTION auth_jwt."stats"() RETURNS TABLE (
	"verifications" bigint,
	"verifications_by_algorithm" jsonb,
	"cache_hits" bigint,
	"key_loads" bigint,
	"unknown_kid_reloads" bigint,
	"request_token_reads" bigint,
	"session_lookups" bigint,
	"jwks_fetches" bigint,
	"jwks_fetch_failures" bigint,
	"jwks_fetches_interrupted" bigint,
	"jwks_bytes" bigint,
	"rejections" bigint,
	"rejections_by_reason" jsonb,
	"cached_tokens" bigint
)
STRICT VOLATILE PARALLEL SAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'stats_wrapper';
REVOKE ALL ON FUNCTION auth_jwt.stats() FROM PUBLIC;

-- PostgREST with Better Auth's tokens in a header of their own: a verified request switches to
-- auth_jwt.authenticated_role (issue 32). pre_request() becomes VOLATILE: it changes the role.
CREATE FUNCTION auth_jwt.set_request_role() RETURNS text
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'auth_jwt_set_request_role';
COMMENT ON FUNCTION auth_jwt.set_request_role() IS
    'For auth_jwt.pre_request(): switches a request with a verified token to auth_jwt.authenticated_role (or the role auth_jwt.role_claim_map gives its role claim) for the transaction; returns it, or NULL';

CREATE OR REPLACE FUNCTION auth_jwt.pre_request() RETURNS void
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

-- require_session keeps live sessions between transactions (issue 30): the session table's
-- trigger, and the function that attaches it (also on each Citus worker's placement).
CREATE FUNCTION auth_jwt.on_session_change() RETURNS trigger
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'auth_jwt_on_session_change';
COMMENT ON FUNCTION auth_jwt.on_session_change() IS
    'Row trigger on the session table: tells every backend to drop the sessions it keeps when a change can end one (not a sign-in, not a refresh)';
CREATE FUNCTION auth_jwt."watch_session_table"() RETURNS TABLE (
	"relation" TEXT,
	"action" TEXT
)
STRICT VOLATILE
LANGUAGE c
AS 'MODULE_PATHNAME', 'watch_session_table_wrapper';
REVOKE ALL ON FUNCTION auth_jwt.watch_session_table() FROM PUBLIC;
REVOKE ALL ON FUNCTION auth_jwt.on_session_change() FROM PUBLIC;
-- Each table watched: the key table's placement on Citus (issue 29; each node watches the
-- placement of a reference key table, where writes land, instead of its empty shell table), and
-- the session table (issue 30). Idempotent: an already watched table is left as it is. Citus runs
-- this update on each worker too.
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
            WHEN undefined_table OR object_not_in_prerequisite_state THEN
                NULL;
            WHEN duplicate_object THEN
                GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, hint = PG_EXCEPTION_DETAIL;
                RAISE WARNING 'auth_jwt: %', msg USING HINT = hint;
        END;
    END LOOP;
END
$$;
