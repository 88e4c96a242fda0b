-- auth_jwt 0.2.0 -> 0.3.0. (Keep in step with what pgrx generates for src/stats.rs and with
-- sql/functions.sql; the upgrade test compares an upgraded database with a fresh install.)

-- stats() counts verifications per algorithm, how often the request's token source was read (the
-- per-request memo missed), and session lookups (auth_jwt.require_session).
DROP FUNCTION auth_jwt.stats();
CREATE FUNCTION auth_jwt."stats"() RETURNS TABLE (
	"verifications" bigint,
	"verifications_by_algorithm" jsonb,
	"cache_hits" bigint,
	"key_loads" bigint,
	"unknown_kid_reloads" bigint,
	"request_token_reads" bigint,
	"session_lookups" bigint,
	"rejections" bigint,
	"rejections_by_reason" jsonb,
	"cached_tokens" bigint
)
STRICT VOLATILE PARALLEL SAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'stats_wrapper';

-- jwks_keys() shows each usable key's type ("EC P-256", "RSA 2048 bits"); its alg and crv are
-- the key's.
DROP FUNCTION auth_jwt.jwks_keys();
CREATE FUNCTION auth_jwt."jwks_keys"() RETURNS TABLE (
	"kid" TEXT,
	"alg" TEXT,
	"crv" TEXT,
	"key_type" TEXT,
	"created_at" timestamp with time zone,
	"expires_at" timestamp with time zone,
	"usable_until" timestamp with time zone,
	"status" TEXT,
	"reason" TEXT
)
STRICT VOLATILE PARALLEL SAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'jwks_keys_wrapper';

COMMENT ON FUNCTION auth_jwt.jwt_verify(text) IS
'The claims of a Better Auth JWT, exactly as signed, after checking its signature (EdDSA, ES256, ES512, RS256 or PS256, as its key decides) against auth_jwt.jwks_table and its exp, nbf, iat, iss and aud; raises SQLSTATE 28000 otherwise';

-- Diagnostics are for operators (see sql/functions.sql).
REVOKE ALL ON FUNCTION auth_jwt.jwks_keys() FROM PUBLIC;
REVOKE ALL ON FUNCTION auth_jwt.jwt_explain(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION auth_jwt.stats_reset() FROM PUBLIC;

-- 0.2.0's statement-level trigger never fired for logical-replication apply: replace it with
-- the row-level one on the configured key table (other tables: run watch_key_table() there).
DO $$
BEGIN
    PERFORM auth_jwt.watch_key_table();
EXCEPTION
    WHEN undefined_table THEN NULL;
    WHEN duplicate_object THEN
        DECLARE msg text; hint text;
        BEGIN
            GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, hint = PG_EXCEPTION_DETAIL;
            RAISE WARNING 'auth_jwt: %', msg USING HINT = hint;
        END;
END
$$;
