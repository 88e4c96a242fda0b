"""Parallel query: verification works in parallel workers (no XID, no writes), and the pooler
rule holds even when the rows are evaluated by workers."""

import psycopg
import pytest

from conftest import as_request, connect, one, token, user_uuid

PARALLEL = [
    "SET LOCAL max_parallel_workers_per_gather = 2",
    "SET LOCAL parallel_setup_cost = 0",
    "SET LOCAL parallel_tuple_cost = 0",
    "SET LOCAL min_parallel_table_scan_size = 0",
]


def parallel(c, leader_participates=True):
    for s in PARALLEL:
        c.execute(s)
    c.execute(f"SET LOCAL parallel_leader_participation = {'on' if leader_participates else 'off'}")


def test_jwt_verify_in_parallel_workers(db):
    """With keys from the table a DBA may re-mark jwt_verify PARALLEL SAFE for bulk verification:
    workers then load the keys themselves, read-only, without an XID."""
    c = connect(db)
    c.execute("ALTER FUNCTION auth_jwt.jwt_verify(text) PARALLEL SAFE")
    c.execute("CREATE TABLE toks AS SELECT i, %s::text AS tok FROM generate_series(1, 5000) i", (token(1),))
    c.execute("ANALYZE toks")
    c.execute("BEGIN")
    parallel(c, leader_participates=False)
    plan = "\n".join(r[0] for r in c.execute("EXPLAIN SELECT count(auth_jwt.jwt_verify(tok)) FROM toks").fetchall())
    assert "Gather" in plan, plan
    assert one(c, "SELECT count(auth_jwt.jwt_verify(tok)) FROM toks") == 5000
    c.execute("COMMIT")


def big(app_db):
    su = connect(app_db)
    su.execute(
        "INSERT INTO tasks (user_id, title) SELECT CASE WHEN i %% 2 = 0 THEN %s::uuid ELSE %s::uuid END, 't' || i FROM generate_series(1, 50000) i",
        (user_uuid(1), user_uuid(2)),
    )
    su.execute("DROP INDEX tasks_user_id_idx")
    su.execute("ANALYZE tasks")


@pytest.mark.parametrize("leader", [True, False])
def test_rls_in_parallel_workers(app_db, leader):
    big(app_db)
    c = connect(app_db, user="authenticator")
    as_request(c, token(1))
    parallel(c, leader)
    assert one(c, "SELECT count(*) FROM tasks") == 25001
    c.execute("ROLLBACK")


@pytest.mark.parametrize("leader", [True, False])
def test_session_token_is_refused_in_parallel_plans(app_db, leader):
    big(app_db)
    c = connect(app_db, user="authenticator")
    c.execute(f"SET auth_jwt.token = '{token(1)}'")  # a previous client's session-scoped token
    c.execute("BEGIN")
    c.execute("SET LOCAL ROLE authenticated")
    parallel(c, leader)
    with pytest.raises(psycopg.Error) as e:
        c.execute("SELECT count(*) FROM tasks").fetchone()
    assert e.value.diag.message_primary == "token was set for the session, not the transaction"
    c.execute("ROLLBACK")


def test_session_token_is_refused_with_a_cached_generic_parallel_plan(app_db):
    """No planning in the leader (a cached generic plan), no rows in the leader: only workers
    evaluate the policy. They still refuse a token that does not come from an explicit SET."""
    big(app_db)
    c = connect(app_db, user="authenticator")
    c.execute("SET plan_cache_mode = force_generic_plan")
    for s in PARALLEL:
        c.execute(s.replace("SET LOCAL", "SET"))
    c.execute("SET parallel_leader_participation = off")
    c.execute("PREPARE q AS SELECT count(*) FROM tasks")
    as_request(c, token(1))
    assert one(c, "EXECUTE q") == 25001
    c.execute("COMMIT")
    c.execute(f"SET auth_jwt.token = '{token(2)}'")  # left behind, session scope
    c.execute("BEGIN")
    c.execute("SET LOCAL ROLE authenticated")
    with pytest.raises(psycopg.Error) as e:
        c.execute("EXECUTE q").fetchone()
    assert e.value.diag.message_primary == "token was set for the session, not the transaction"
    c.execute("ROLLBACK")


def test_verifying_functions_are_parallel_restricted(app_db):
    c = connect(app_db)
    rows = c.execute(
        "SELECT p.oid::regprocedure::text, proparallel FROM pg_proc p JOIN pg_namespace n ON n.oid = pronamespace "
        "WHERE nspname = 'auth_jwt' AND proname LIKE 'jwt_%' ORDER BY 1"
    ).fetchall()
    # Request's token: workers cannot apply the pooler rule. Explicit token: with jwks_url every
    # worker would fetch (test_jwks_url.py::test_parallel_workers_do_not_fetch).
    assert dict(rows) == {
        "auth_jwt.jwt_claim_sub()": "r",
        "auth_jwt.jwt_claim_sub(text)": "r",
        "auth_jwt.jwt_claim_uuid()": "r",
        "auth_jwt.jwt_claim_uuid(text)": "r",
        "auth_jwt.jwt_claims()": "r",
        "auth_jwt.jwt_explain(text)": "r",
        "auth_jwt.jwt_verify(text)": "r",
    }
    # Forcing it anyway does not open the hole: a worker refuses to read the request's token.
    c.execute("ALTER FUNCTION auth_jwt.jwt_claim_uuid() PARALLEL SAFE")
    big(app_db)
    u = connect(app_db, user="authenticator")
    as_request(u, token(1))
    parallel(u, leader_participates=False)
    with pytest.raises(psycopg.Error, match="cannot be read in a parallel worker"):
        u.execute("SELECT count(*) FROM tasks").fetchone()
    u.execute("ROLLBACK")


def test_wrapped_policy_still_scans_in_parallel(app_db):
    big(app_db)
    su = connect(app_db)
    su.execute("DROP POLICY tasks_select ON tasks")
    su.execute("CREATE POLICY tasks_select ON tasks FOR SELECT TO authenticated USING (user_id = (SELECT auth_jwt.jwt_claim_uuid()))")
    c = connect(app_db, user="authenticator")
    as_request(c, token(2))
    parallel(c, leader_participates=False)
    plan = "\n".join(r[0] for r in c.execute("EXPLAIN SELECT count(*) FROM tasks").fetchall())
    assert "Parallel Seq Scan" in plan, plan
    assert one(c, "SELECT count(*) FROM tasks") == 25001
    c.execute("ROLLBACK")


@pytest.mark.parametrize("leader", [True, False])
def test_sessions_are_checked_in_parallel_workers(db, leader):
    """auth_jwt.require_session in workers (jwt_verify re-marked PARALLEL SAFE, as a DBA may with
    keys from the table): each looks the session up under a fresh snapshot, read-only with no
    XID, and a signed-out session is refused there too."""
    c = connect(db)
    c.execute("ALTER FUNCTION auth_jwt.jwt_verify(text) PARALLEL SAFE")
    c.execute('CREATE TABLE public.session (id text PRIMARY KEY, "userId" text NOT NULL, "expiresAt" timestamptz NOT NULL)')
    c.execute("INSERT INTO public.session VALUES ('s1', 'user1', now() + interval '1 day')")
    c.execute("CREATE TABLE toks AS SELECT i, %s::text AS tok FROM generate_series(1, 5000) i", (token(1, claims='{"sid":"s1"}'),))
    c.execute("ANALYZE toks")
    c.execute("SET auth_jwt.require_session = on")
    q = "SELECT count(auth_jwt.jwt_verify(tok)) FROM toks"
    c.execute("BEGIN")
    parallel(c, leader)
    plan = "\n".join(r[0] for r in c.execute(f"EXPLAIN {q}").fetchall())
    assert "Gather" in plan, plan
    assert one(c, q) == 5000
    c.execute("COMMIT")
    c.execute("DELETE FROM public.session")
    c.execute("BEGIN")
    parallel(c, leader)
    with pytest.raises(psycopg.Error) as e:
        c.execute(q)
    assert e.value.diag.message_primary == "session has ended"
    c.execute("ROLLBACK")
