-- auth_jwt 0.2.0 -> 0.3.0. (Keep in step with what pgrx generates for src/stats.rs and with
-- sql/functions.sql; the upgrade test compares an upgraded database with a fresh install.)

-- stats() counts verifications per algorithm, how often the request's token source was read (the
-- per-request memo missed), session lookups (auth_jwt.require_session) and JWKS fetches
-- (auth_jwt.jwks_url).
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
	"jwks_bytes" bigint,
	"rejections" bigint,
	"rejections_by_reason" jsonb,
	"cached_tokens" bigint
)
STRICT VOLATILE PARALLEL SAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'stats_wrapper';

-- jwks_keys() shows each usable key's type ("EC P-256", "RSA 2048 bits"); its alg and crv are
-- the key's; where it came from (the key table, or auth_jwt.jwks_url's host) and when a JWKS
-- document was fetched.
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
	"reason" TEXT,
	"source" TEXT,
	"fetched_at" timestamp with time zone
)
STRICT VOLATILE PARALLEL RESTRICTED
LANGUAGE c
AS 'MODULE_PATHNAME', 'jwks_keys_wrapper';

COMMENT ON FUNCTION auth_jwt.jwt_verify(text) IS
'The claims of a Better Auth JWT, exactly as signed, after checking its signature (EdDSA, ES256, ES512, RS256 or PS256, as its key decides) against auth_jwt.jwks_table and its exp, nbf, iat, iss and aud; raises SQLSTATE 28000 otherwise';

COMMENT ON FUNCTION auth_jwt.on_key_change() IS
'Row trigger on the tables under the key table: tells every backend''s key cache to reload';

-- No parallel worker verifies: with auth_jwt.jwks_url each would fetch the keys anew (see
-- sql/functions.sql).
ALTER FUNCTION auth_jwt.jwt_verify(text) PARALLEL RESTRICTED;
ALTER FUNCTION auth_jwt.jwt_claim_uuid(text) PARALLEL RESTRICTED;
ALTER FUNCTION auth_jwt.jwt_claim_sub(text) PARALLEL RESTRICTED;
ALTER FUNCTION auth_jwt.jwt_explain(text) PARALLEL RESTRICTED;

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
