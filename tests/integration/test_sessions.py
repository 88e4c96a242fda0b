"""auth_jwt.require_session across backends: a sign-out that commits refuses the token at every
backend's next transaction; the answer is remembered for one transaction, never longer; a lookup
that fails remembers nothing; old snapshots (REPEATABLE READ, SERIALIZABLE, an imported one) do
not hide a sign-out; both token sources; the DBA's setting cannot be switched off by the caller."""

import psycopg
import pytest
from psycopg import sql

from conftest import as_request, connect, grant_stats, one, token

SESSIONS = [("s1", "user1"), ("s1b", "user1"), ("s2", "user2")]


@pytest.fixture
def sdb(app_db):
    """app_db with a live Better Auth session per (id, user), and require_session on for it."""
    with connect(app_db) as c:
        for sid, user in SESSIONS:
            c.execute(
                "INSERT INTO session (id, \"expiresAt\", token, \"updatedAt\", \"userId\") "
                "VALUES (%s, now() + interval '1 day', %s, now(), %s)",
                (sid, f"secret-token-of-{sid}", user),
            )
        c.execute(f"ALTER DATABASE {app_db} SET auth_jwt.require_session = on")
    return app_db


def tok(sid: str, seed: int | None = None) -> str:
    seed = seed or int(dict(SESSIONS).get(sid, "user1")[-1])
    return token(seed, claims=f'{{"sid":"{sid}"}}')


def titles(conn, t, via="setting"):
    """One PostgREST-style transaction: the caller's task titles, or (sqlstate, message)."""
    as_request(conn, t, via=via)
    try:
        rows = sorted(r[0] for r in conn.execute("SELECT title FROM tasks").fetchall())
        conn.execute("COMMIT")
        return rows
    except psycopg.Error as e:
        conn.execute("ROLLBACK")
        return (e.sqlstate, e.diag.message_primary)


ENDED = ("28000", "session has ended")


def sign_out(db, sid):
    with connect(db) as c:
        c.execute("DELETE FROM session WHERE id = %s", (sid,))


def test_sign_out_is_seen_by_the_next_transaction_of_every_backend(sdb):
    a, a2, b = (connect(sdb, "authenticator") for _ in range(3))
    checker = connect(sdb)
    t1, t1b, t2 = tok("s1"), tok("s1b"), tok("s2")
    assert titles(a, t1) == ["task of user1"]
    assert titles(a2, t1b) == ["task of user1"]
    assert titles(b, t2) == ["task of user2"]
    assert one(checker, "SELECT auth_jwt.jwt_verify(%s)->>'sid'", t1) == "s1"
    sign_out(sdb, "s1")
    assert titles(a, t1) == ENDED
    assert titles(b, t1) == ENDED, "another backend, with the token cached from before"
    assert titles(a2, t1b) == ["task of user1"], "the user's other session keeps working"
    assert titles(b, t2) == ["task of user2"]
    with pytest.raises(psycopg.Error) as e:
        checker.execute("SELECT auth_jwt.jwt_verify(%s)", (t1,))
    assert e.value.diag.message_primary == "session has ended"
    assert e.value.diag.message_hint.endswith("the client must sign in again.")


def test_the_answer_lasts_one_transaction_and_no_longer(sdb):
    grant_stats(sdb, "authenticated")
    a = connect(sdb, "authenticator")
    t1 = tok("s1")
    as_request(a, t1)
    assert one(a, "SELECT count(*) FROM tasks") == 1
    sign_out(sdb, "s1")
    # Documented window: within the transaction that already checked, the answer stands.
    assert one(a, "SELECT count(*) FROM tasks") == 1
    assert one(a, "SELECT session_lookups FROM auth_jwt.stats()") >= 1
    a.execute("COMMIT")
    assert titles(a, t1) == ENDED


@pytest.mark.parametrize("isolation", ["REPEATABLE READ", "SERIALIZABLE"])
def test_a_snapshot_from_before_the_sign_out_does_not_hide_it(sdb, isolation):
    a = connect(sdb, "authenticator")
    t1 = tok("s1")
    assert titles(a, t1) == ["task of user1"]
    a.execute(f"BEGIN ISOLATION LEVEL {isolation}")
    assert one(a, "SELECT count(*) FROM pg_class") > 0  # the transaction's snapshot is taken here
    sign_out(sdb, "s1")
    a.execute("SET LOCAL ROLE authenticated")
    a.execute("SELECT set_config('auth_jwt.token', %s, true)", (t1,))
    with pytest.raises(psycopg.Error) as e:
        a.execute("SELECT title FROM tasks")
    assert (e.value.sqlstate, e.value.diag.message_primary) == ENDED
    a.execute("ROLLBACK")


def test_an_imported_snapshot_from_before_the_sign_out_does_not_hide_it(sdb):
    exporter = connect(sdb, autocommit=False)
    exporter.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    snap = one(exporter, "SELECT pg_export_snapshot()")
    sign_out(sdb, "s1")
    a = connect(sdb)
    a.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
    a.execute("SET TRANSACTION SNAPSHOT %s" % sql.quote(snap))
    assert one(a, "SELECT count(*) FROM session WHERE id = 's1'") == 1, "the imported snapshot still shows s1"
    with pytest.raises(psycopg.Error) as e:
        a.execute("SELECT auth_jwt.jwt_verify(%s)", (tok("s1"),))
    assert e.value.diag.message_primary == "session has ended"
    a.execute("ROLLBACK")
    exporter.rollback()


def test_a_lookup_that_fails_remembers_nothing(sdb):
    """lock_timeout during the lookup, inside a savepoint: after ROLLBACK TO, the same transaction
    looks the session up again and sees the sign-out that committed meanwhile."""
    locker = connect(sdb, autocommit=False)
    locker.execute("LOCK TABLE session IN ACCESS EXCLUSIVE MODE")
    a = connect(sdb, "authenticator")
    t1 = tok("s1")
    as_request(a, t1)
    a.execute("SET LOCAL lock_timeout = '200ms'")
    a.execute("SAVEPOINT before_lookup")
    with pytest.raises(psycopg.Error) as e:
        a.execute("SELECT title FROM tasks")
    assert e.value.sqlstate == "55P03"  # lock_not_available
    a.execute("ROLLBACK TO SAVEPOINT before_lookup")
    locker.execute("DELETE FROM session WHERE id = 's1'")
    locker.commit()
    with pytest.raises(psycopg.Error) as e:
        a.execute("SELECT title FROM tasks")
    assert (e.value.sqlstate, e.value.diag.message_primary) == ENDED
    a.execute("ROLLBACK")


def test_a_cancelled_lookup_remembers_nothing(sdb):
    locker = connect(sdb, autocommit=False)
    locker.execute("LOCK TABLE session IN ACCESS EXCLUSIVE MODE")
    a = connect(sdb, "authenticator")
    as_request(a, tok("s1"))
    a.execute("SET LOCAL statement_timeout = '200ms'")
    a.execute("SAVEPOINT before_lookup")
    with pytest.raises(psycopg.Error) as e:
        a.execute("SELECT title FROM tasks")
    assert e.value.sqlstate == "57014"  # query_canceled
    a.execute("ROLLBACK TO SAVEPOINT before_lookup")
    locker.execute("DELETE FROM session WHERE id = 's1'")
    locker.commit()
    with pytest.raises(psycopg.Error) as e:
        a.execute("SELECT title FROM tasks")
    assert (e.value.sqlstate, e.value.diag.message_primary) == ENDED
    a.execute("ROLLBACK")


def test_request_headers_source(sdb):
    a = connect(sdb, "authenticator")
    assert titles(a, tok("s2"), via="headers") == ["task of user2"]
    sign_out(sdb, "s2")
    assert titles(a, tok("s2"), via="headers") == ENDED


def test_the_caller_cannot_switch_it_off(sdb):
    """Every route an application role has: the DBA's value stays in force."""
    sign_out(sdb, "s1")
    a = connect(sdb, "authenticator")
    notices = []
    a.add_notice_handler(lambda d: notices.append(d.message_primary))
    # Before the library loads, SET creates a placeholder; loading refuses it.
    a.execute("SET auth_jwt.require_session = off")
    assert titles(a, tok("s1")) == ENDED
    assert any("permission denied to set parameter" in n for n in notices), notices
    # After: each route is refused outright.
    for attempt in ("SET auth_jwt.require_session = off", "SET auth_jwt.session_table = 'public.fake'",
                    "SET auth_jwt.session_claim = 'nope'",
                    "SELECT set_config('auth_jwt.require_session', 'off', false)",
                    "ALTER ROLE authenticator SET auth_jwt.require_session = off"):
        with pytest.raises(psycopg.Error) as e:
            a.execute(attempt)
        assert e.value.sqlstate == "42501", attempt
    assert one(a, "SHOW auth_jwt.require_session") == "on"
    assert one(a, "SHOW auth_jwt.session_table") == "public.session"
    assert one(a, "SHOW auth_jwt.session_claim") == "sid"
    assert titles(a, tok("s1")) == ENDED
    assert titles(a, tok("s2")) == ["task of user2"]
    # PGOPTIONS: the connection's value is refused, and the session fails closed.
    with connect(sdb, "authenticator", options="-c auth_jwt.require_session=off") as p:
        assert titles(p, tok("s2")) == ("42501", "auth_jwt.require_session was refused for this session")


def test_off_by_default_and_off_changes_nothing(app_db):
    grant_stats(app_db, "authenticator")
    a = connect(app_db, "authenticator")
    assert one(a, "SELECT session_lookups FROM auth_jwt.stats()") == 0  # loads the library
    assert one(a, "SHOW auth_jwt.require_session") == "off"
    assert titles(a, token(1)) == ["task of user1"], "no sid needed"
    assert titles(a, tok("never-existed")) == ["task of user1"], "no lookup"
    assert one(a, "SELECT session_lookups FROM auth_jwt.stats()") == 0


def test_a_session_table_replaced_by_its_schemas_owner_is_never_read_as_the_old_owner(sdb):
    """Red-team finding: a role that owns the schema (here the database owner) drops the session
    table and puts a view calling its own function in its place while a backend that had read the
    old table (owned by the superuser) begins a transaction. The lookup must read the new
    relation as the new relation's owner, never as the old one's."""
    from conftest import EVIL, database_owner, notices_of

    with database_owner(sdb) as (role, dbo):
        dbo.execute(EVIL)
        victim = connect(sdb)
        seen = notices_of(victim)
        t1 = tok("s1")
        assert one(victim, "SELECT auth_jwt.jwt_verify(%s)->>'sid'", t1) == "s1"  # plan kept, as postgres
        victim.execute("BEGIN")
        dbo.execute("DROP TABLE public.session")
        dbo.execute("""CREATE VIEW public.session AS SELECT * FROM (VALUES ('s1', 'user1', now() + interval '1 day'))
                       v(id, "userId", "expiresAt") WHERE public.evil()""")
        assert one(victim, "SELECT auth_jwt.jwt_verify(%s)->>'sid'", t1) == "s1"
        victim.execute("COMMIT")
        assert f"evil() runs as {role}" in seen, seen
        assert "evil() runs as postgres" not in seen, seen
        assert one(victim, "SELECT rolsuper FROM pg_roles WHERE rolname = %s", role) is False


def test_an_answer_from_a_rolled_back_savepoint_is_not_kept(sdb):
    """Red-team finding: a lookup inside a savepoint that is rolled back is forgotten, as is the
    per-request memo built on it; the sign-out that committed meanwhile is seen."""
    a = connect(sdb, "authenticator")
    t1 = tok("s1")
    as_request(a, t1)
    a.execute("SAVEPOINT sp")
    assert one(a, "SELECT count(*) FROM tasks") == 1
    a.execute("ROLLBACK TO SAVEPOINT sp")
    sign_out(sdb, "s1")
    with pytest.raises(psycopg.Error) as e:
        a.execute("SELECT title FROM tasks")
    assert (e.value.sqlstate, e.value.diag.message_primary) == ENDED
    a.execute("ROLLBACK")
    # The same through an exception block in PL/pgSQL, with an explicit token.
    su = connect(sdb)
    su.execute("BEGIN")
    su.execute("DO $$ BEGIN PERFORM auth_jwt.jwt_verify(%s); RAISE EXCEPTION 'x'; EXCEPTION WHEN others THEN NULL; END $$"
               % sql.quote(tok("s2")))
    sign_out(sdb, "s2")
    with pytest.raises(psycopg.Error) as e:
        su.execute("SELECT auth_jwt.jwt_verify(%s)", (tok("s2"),))
    assert e.value.diag.message_primary == "session has ended"
    su.execute("ROLLBACK")
