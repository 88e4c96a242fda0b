-- auth_jwt 0.1.0 -> 0.2.0: adds auth_jwt.jwt_explain(token), a row per verification step.
-- (Keep in step with the function pgrx generates in src/diagnostics.rs; the upgrade test
-- compares an upgraded database with a fresh 0.2.0 install.)

CREATE FUNCTION auth_jwt."jwt_explain"(
	"token" TEXT
) RETURNS TABLE (
	"step" TEXT,
	"ok" bool,
	"detail" TEXT
)
STRICT STABLE PARALLEL SAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'jwt_explain_wrapper';
