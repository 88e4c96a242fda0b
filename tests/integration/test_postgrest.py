"""PostgREST 16 in front of the example schema, with Better Auth's token in a header of its own
(PostgREST cannot verify EdDSA, so it sees no JWT and runs every request as db-anon-role): the
per-request SQL PostgREST sends is replayed here statement by statement, as v16.2 builds it
(src/library/PostgREST/MainTx.hs, Query/PreQuery.hs, Query/Statements.hs, Query/QueryBuilder.hs),
prepared like PostgREST's (db-prepared-statements defaults to true), and PostgREST's mapping of
SQLSTATEs to HTTP statuses (Error.hs) is applied to what the database answers. With
db-pre-request = "auth_jwt.pre_request" and auth_jwt.authenticated_role = 'authenticated', a
request with a verified token runs as `authenticated` and its writes land; everything else stays
as PostgREST decided. (No PostgREST binary can be obtained on this machine.)"""

import json

import psycopg
import pytest
from psycopg.types.json import Json

from conftest import connect, one, token, user_uuid

# One statement with every request variable, in PostgREST's order; all values are parameters.
TXVARS = ("select set_config('search_path', %s, true), set_config('role', %s, true), "
          "set_config('request.jwt.claims', %s, true), set_config('request.method', %s, true), "
          "set_config('request.path', %s, true), set_config('request.headers', %s, true), "
          "set_config('request.cookies', %s, true)")
PRE_REQUEST = 'select "auth_jwt"."pre_request"()'
RESPONSE = ("nullif(current_setting('response.headers', true), '') AS response_headers, "
            "nullif(current_setting('response.status', true), '') AS response_status, ")

GET = ('WITH pgrst_source AS ( SELECT "public"."tasks".* FROM "public"."tasks"    )  SELECT null::bigint AS '
       "total_result_set, pg_catalog.count(_postgrest_t) AS page_total, coalesce(json_agg(_postgrest_t), '[]') AS body, "
       + RESPONSE + "'' AS response_inserted FROM ( SELECT * FROM pgrst_source ) _postgrest_t")
POST = ('WITH pgrst_source AS (INSERT INTO "public"."tasks"("title") SELECT "pgrst_body"."title" FROM (SELECT %s AS '
        'json_data) pgrst_payload, LATERAL (SELECT "title" FROM json_to_record(pgrst_payload.json_data) AS _("title" text) ) '
        'pgrst_body  RETURNING "public"."tasks".*) SELECT \'\' AS total_result_set, pg_catalog.count(_postgrest_t) AS '
        "page_total, array[]::text[] AS header, coalesce(json_agg(_postgrest_t), '[]') AS body, " + RESPONSE
        + '\'\' AS response_inserted FROM (SELECT "tasks".* FROM "pgrst_source" AS "tasks"   ) _postgrest_t')
POST_AS = ('WITH pgrst_source AS (INSERT INTO "public"."tasks"("title", "user_id") SELECT "pgrst_body"."title", '
           '"pgrst_body"."user_id" FROM (SELECT %s AS json_data) pgrst_payload, LATERAL (SELECT "title", "user_id" FROM '
           'json_to_record(pgrst_payload.json_data) AS _("title" text, "user_id" uuid) ) pgrst_body  RETURNING 1) SELECT '
           "'' AS total_result_set, pg_catalog.count(_postgrest_t) AS page_total, array[]::text[] AS header, ''::text AS "
           "body, " + RESPONSE + "'' AS response_inserted FROM (SELECT * FROM pgrst_source) _postgrest_t")
PATCH = ('WITH pgrst_source AS (UPDATE "public"."tasks" SET "completed" = "pgrst_body"."completed" FROM (SELECT %s AS '
         'json_data) pgrst_payload, LATERAL (SELECT "completed" FROM json_to_record(pgrst_payload.json_data) AS '
         '_("completed" boolean) ) pgrst_body  WHERE  "public"."tasks"."id" = %s RETURNING 1) SELECT \'\' AS '
         "total_result_set, pg_catalog.count(_postgrest_t) AS page_total, array[]::text[] AS header, ''::text AS body, "
         + RESPONSE + "'' AS response_inserted FROM (SELECT * FROM pgrst_source) _postgrest_t")
DELETE = ('WITH pgrst_source AS (DELETE FROM "public"."tasks"  WHERE  "public"."tasks"."id" = %s RETURNING 1) SELECT '
          "'' AS total_result_set, pg_catalog.count(_postgrest_t) AS page_total, array[]::text[] AS header, ''::text AS "
          "body, " + RESPONSE + "'' AS response_inserted FROM (SELECT * FROM pgrst_source) _postgrest_t")


def http_status(sqlstate: str, authed: bool) -> int:
    """PostgREST's mapSQLtoHTTP for the codes these requests can meet (v16.2 Error.hs)."""
    if sqlstate.startswith("PT"):
        return int(sqlstate[2:])
    if sqlstate == "42501":
        return 403 if authed else 401
    if sqlstate.startswith("28"):
        return 403
    if sqlstate == "25006":
        return 405
    return 400


class PostgREST:
    """One PostgREST connection (as `authenticator`) replaying its transactions. `role` is what
    PostgREST decided: always db-anon-role here, since it sees no JWT of its own."""

    def __init__(self, db, anon="anon"):
        self.c = connect(db, user="authenticator")
        self.anon = anon
        self.role_in_force = None

    def request(self, method, path, sql, params=(), token=None, headers=None, session_token=None):
        """(HTTP status, body rows or the error) of one request; the token goes in X-Auth-Token."""
        h = {"host": "api.example.com", "accept": "application/json", **(headers or {})}
        if token:
            h["x-auth-token"] = f"Bearer {token}"
        mode = "READ ONLY" if method == "GET" else "READ WRITE"
        c = self.c
        c.execute(f"BEGIN ISOLATION LEVEL READ COMMITTED {mode}", prepare=True)
        try:
            c.execute(TXVARS, ['"public", "public"', self.anon, json.dumps({"role": self.anon}, separators=(",", ":")),
                               method, path, json.dumps(h, separators=(",", ":")), "{}"], prepare=True)
            c.execute(PRE_REQUEST, prepare=True)
            self.role_in_force = one(c, "SELECT current_user")
            row = c.execute(sql, params, prepare=True).fetchone()
            c.execute("COMMIT", prepare=True)
        except psycopg.Error as e:
            c.execute("ABORT", prepare=True)
            return http_status(e.sqlstate, authed=self.anon != "anon"), (e.sqlstate, e.diag.message_primary)
        body = row[3] if method != "GET" else row[2]
        status = {"GET": 200, "POST": 201}.get(method, 204)
        return status, body


@pytest.fixture
def postgrest_db(app_db):
    su = connect(app_db)
    # The recipe's database settings: the header PostgREST passes untouched, and the role switch.
    su.execute(f"ALTER DATABASE {app_db} SET auth_jwt.token_header = 'x-auth-token'")
    su.execute(f"ALTER DATABASE {app_db} SET auth_jwt.authenticated_role = 'authenticated'")
    return app_db


def ids_of(db, seed):
    return [r[0] for r in connect(db).execute("SELECT id FROM tasks WHERE user_id = %s ORDER BY title", (user_uuid(seed),))]


def test_a_signed_in_user_reads_and_writes_only_his_rows(postgrest_db):
    api, t1 = PostgREST(postgrest_db), token(1)
    assert api.request("GET", "/tasks", GET, token=t1)[0] == 200
    assert api.role_in_force == "authenticated", "switched from anon by pre_request"
    status, body = api.request("GET", "/tasks", GET, token=t1)
    assert [t["title"] for t in body] == ["task of user1"]
    # POST: user_id comes from the column default, auth_jwt.jwt_claim_uuid().
    status, body = api.request("POST", "/tasks", POST, [Json({"title": "written through PostgREST"})], token=t1)
    assert status == 201 and body[0]["user_id"] == user_uuid(1), body
    assert sorted(t["title"] for t in api.request("GET", "/tasks", GET, token=t1)[1]) == [
        "task of user1", "written through PostgREST"]
    own, other = ids_of(postgrest_db, 1)[0], ids_of(postgrest_db, 2)[0]
    # PATCH and DELETE: his rows change; another user's row is invisible, so nothing happens to it.
    assert api.request("PATCH", "/tasks", PATCH, [Json({"completed": True}), own], token=t1)[0] == 204
    assert api.request("PATCH", "/tasks", PATCH, [Json({"completed": True}), other], token=t1)[0] == 204
    su = connect(postgrest_db)
    assert one(su, "SELECT completed FROM tasks WHERE id = %s", own) is True
    assert one(su, "SELECT completed FROM tasks WHERE id = %s", other) is False, "not updatable"
    assert api.request("DELETE", "/tasks", DELETE, [other], token=t1)[0] == 204
    assert one(su, "SELECT count(*) FROM tasks WHERE id = %s", other) == 1, "not deletable"
    assert api.request("DELETE", "/tasks", DELETE, [own], token=t1)[0] == 204
    assert one(su, "SELECT count(*) FROM tasks WHERE id = %s", own) == 0
    # Writing a row for another user: the policy's WITH CHECK refuses it. PostgREST decided on
    # anon, so it answers 401 rather than 403.
    status, err = api.request("POST", "/tasks", POST_AS, [Json({"title": "x", "user_id": user_uuid(2)})], token=t1)
    assert (status, err[0]) == (401, "42501") and "row-level security" in err[1], err
    # After each transaction the connection is PostgREST's login role again.
    assert one(api.c, "SELECT current_user") == "authenticator"


def test_anonymous_and_refused_requests(postgrest_db):
    api = PostgREST(postgrest_db)
    assert api.request("GET", "/tasks", GET) == (200, [])
    assert api.role_in_force == "anon", "no token, no switch"
    assert api.request("GET", "/tasks", GET, headers={"x-auth-token": "Bearer "}) == (200, []), \
        "the scheme with no credential is no token (red-team: was refused as not Bearer)"
    assert api.role_in_force == "anon"
    status, err = api.request("POST", "/tasks", POST, [Json({"title": "x"})])
    assert (status, err[0]) == (401, "42501"), "anon may not insert"
    status, err = api.request("GET", "/tasks", GET, token=token(1, exp="-3600"))
    assert (status, err) == (401, ("PT401", "token has expired"))
    status, err = api.request("GET", "/tasks", GET, token=token(9, kid="k1"))
    assert (status, err) == (401, ("PT401", "invalid token signature"))
    assert one(connect(postgrest_db), "SELECT count(*) FROM tasks") == 2, "nothing was written"


def test_without_authenticated_role_nothing_is_switched(app_db):
    """0.3.0's behaviour, and the default: pre_request only verifies."""
    su = connect(app_db)
    su.execute(f"ALTER DATABASE {app_db} SET auth_jwt.token_header = 'x-auth-token'")
    api = PostgREST(app_db)
    status, body = api.request("GET", "/tasks", GET, token=token(1))
    assert (status, [t["title"] for t in body], api.role_in_force) == (200, ["task of user1"], "anon")
    assert api.request("POST", "/tasks", POST, [Json({"title": "x"})], token=token(1))[0] == 401


def test_the_pooler_rule_and_sign_out_hold_through_the_switch(postgrest_db):
    su = connect(postgrest_db)
    # A token left in the session (not the transaction) is refused, even beside a good header.
    api = PostgREST(postgrest_db)
    api.c.execute("SELECT set_config('auth_jwt.token', %s, false)", (token(2),))
    status, err = api.request("GET", "/tasks", GET, token=token(1))
    assert (status, err) == (401, ("PT401", "token was set for the session, not the transaction"))
    with pytest.raises(psycopg.Error) as e:
        api.c.execute("SELECT auth_jwt.jwt_claims()")
    assert e.value.diag.message_detail.startswith("auth_jwt.token survives the end of the transaction"), \
        "a detail that starts with a setting's name keeps its spelling (red-team: was 'Auth_jwt.token')"
    # require_session: a signed-out session's token gets no role and no rows.
    su.execute("INSERT INTO session (id, \"userId\", token, \"expiresAt\", \"createdAt\", \"updatedAt\") "
               "VALUES ('s1', 'user1', 'opaque', now() + interval '1 day', now(), now())")
    su.execute(f"ALTER DATABASE {postgrest_db} SET auth_jwt.require_session = on")
    api = PostgREST(postgrest_db)
    t = token(1, sid="s1")
    assert api.request("GET", "/tasks", GET, token=t)[0] == 200 and api.role_in_force == "authenticated"
    su.execute("DELETE FROM session WHERE id = 's1'")
    status, err = api.request("POST", "/tasks", POST, [Json({"title": "x"})], token=t)
    assert (status, err) == (401, ("PT401", "session has ended"))


def test_the_role_claim_counts_only_through_the_allow_list(postgrest_db):
    su = connect(postgrest_db)
    su.execute("CREATE ROLE app_admin NOLOGIN")
    su.execute("GRANT app_admin TO authenticator")
    su.execute("GRANT SELECT ON tasks TO app_admin")
    su.execute("CREATE POLICY tasks_admin ON tasks FOR SELECT TO app_admin USING (true)")
    api = PostgREST(postgrest_db)
    admin = token(1, role="admin")
    # No map: the claim is ignored, even when it names a real role.
    for claim in ("admin", "app_admin", "postgres"):
        api.request("GET", "/tasks", GET, token=token(1, role=claim))
        assert api.role_in_force == "authenticated", claim
    su.execute(f"ALTER DATABASE {postgrest_db} SET auth_jwt.role_claim_map = 'admin=app_admin'")
    api = PostgREST(postgrest_db)
    status, body = api.request("GET", "/tasks", GET, token=admin)
    assert (status, api.role_in_force, len(body)) == (200, "app_admin", 2)
    for claim in ("user", "app_admin", "Admin", "admin,user"):
        api.request("GET", "/tasks", GET, token=token(1, role=claim))
        assert api.role_in_force == "authenticated", f"{claim}: not in the list, the default role"
    # The list can name only roles the login role may become, and never a superuser.
    su.execute(f"ALTER DATABASE {postgrest_db} SET auth_jwt.role_claim_map = 'admin=postgres'")
    api = PostgREST(postgrest_db)
    status, err = api.request("GET", "/tasks", GET, token=admin)
    assert err == ("42501", 'auth_jwt will not switch to role "postgres": it is a superuser')
    su.execute("CREATE ROLE outsider NOLOGIN")
    su.execute(f"ALTER DATABASE {postgrest_db} SET auth_jwt.role_claim_map = 'admin=outsider'")
    api = PostgREST(postgrest_db)
    status, err = api.request("GET", "/tasks", GET, token=admin)
    assert err[0] == "42501" and "permission denied to set role" in err[1], err
    su.execute(f"ALTER DATABASE {postgrest_db} SET auth_jwt.role_claim_map = 'admin'")
    api = PostgREST(postgrest_db)
    status, err = api.request("GET", "/tasks", GET, token=admin)
    assert err == ("22023", "auth_jwt.role_claim_map is not a list of claim value=role pairs")


def test_the_switch_is_refused_outside_a_postgrest_request(postgrest_db):
    su = connect(postgrest_db)
    c = connect(postgrest_db, user="authenticator")
    # Not from the role set for this request: a plain transaction of the login role.
    c.execute("BEGIN")
    c.execute("SELECT set_config('auth_jwt.token', %s, true)", (token(1),))
    with pytest.raises(psycopg.Error) as e:
        c.execute("SELECT auth_jwt.pre_request()")
    assert e.value.sqlstate == "25000" and "only from the role set for this request" in e.value.diag.message_primary
    c.execute("ROLLBACK")
    # Nor from a role set by a function's SET clause (red-team): that is not PostgREST's request.
    su.execute("CREATE FUNCTION public.as_anon() RETURNS text LANGUAGE sql SET role = 'anon' "
               "AS $$ SELECT auth_jwt.set_request_role() $$")
    su.execute("GRANT EXECUTE ON FUNCTION public.as_anon() TO authenticator, anon")
    c.execute("BEGIN")
    c.execute("SELECT set_config('auth_jwt.token', %s, true)", (token(1),))
    with pytest.raises(psycopg.Error) as e:
        c.execute("SELECT public.as_anon()")
    assert e.value.sqlstate == "25000", e.value
    c.execute("ROLLBACK")
    # Inside SECURITY DEFINER: refused (PostgreSQL forbids SET ROLE there too).
    su.execute("CREATE FUNCTION public.wrapped() RETURNS void LANGUAGE sql SECURITY DEFINER AS "
               "$$ SELECT auth_jwt.pre_request() $$")
    su.execute("GRANT EXECUTE ON FUNCTION public.wrapped() TO anon")
    c.execute("BEGIN")
    c.execute("SELECT set_config('role', 'anon', true), set_config('auth_jwt.token', %s, true)", (token(1),))
    with pytest.raises(psycopg.Error) as e:
        c.execute("SELECT public.wrapped()")
    assert e.value.sqlstate == "42501" and "SECURITY DEFINER" in e.value.diag.message_primary
    c.execute("ROLLBACK")
    # A role that does not exist: a clear error, not a silent anon.
    su.execute(f"ALTER DATABASE {postgrest_db} SET auth_jwt.authenticated_role = 'nobody'")
    api = PostgREST(postgrest_db)
    status, err = api.request("GET", "/tasks", GET, token=token(1))
    assert err == ("42704", 'auth_jwt cannot switch to role "nobody": it does not exist')
