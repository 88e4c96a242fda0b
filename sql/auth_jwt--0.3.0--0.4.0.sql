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
