"""Freshness has no escape: after a change of the key table commits, no transaction that starts
afterwards, in any backend, accepts a removed or replaced key, whatever the isolation level, the
interleaving of statements and commits, or the errors and interrupts of an earlier reload.

Each test asserts the intended state after the attack (the deleted key refused, the remaining
or new key accepted), not only that something failed."""

import threading
import time

import psycopg
import psycopg.sql
import pytest

from conftest import connect, jwk, one, sqlstate_of, token

NOT_FOUND = ("28000", "unable to find matching signing key")
BAD_SIGNATURE = ("28000", "invalid token signature")


def sub(conn, tok):
    return one(conn, "SELECT auth_jwt.jwt_verify(%s)->>'sub'", tok)


def load_keys(conn, tok):
    """Verify once, so the backend has the keys (and the token) cached."""
    assert sub(conn, tok) == "user1"


@pytest.mark.parametrize("isolation", ["REPEATABLE READ", "SERIALIZABLE"])
def test_reload_under_an_old_transaction_snapshot_does_not_revive_a_deleted_key(db, isolation):
    a, b = connect(db, autocommit=False), connect(db)
    t1 = token(1)
    load_keys(a, t1)
    a.commit()
    a.execute(f"SET TRANSACTION ISOLATION LEVEL {isolation}")
    one(a, "SELECT count(*) FROM pg_class")  # the transaction's snapshot: k1 exists
    b.execute("DELETE FROM jwks WHERE id = 'k1'")
    one(a, "SELECT count(*) FROM pg_class")  # a lock: the invalidation is processed here
    # Keys are read with the latest snapshot, not the transaction's: refused already.
    assert sqlstate_of(a, "SELECT auth_jwt.jwt_verify(%s)", t1) == NOT_FOUND
    a.execute("BEGIN")
    assert sqlstate_of(a, "SELECT auth_jwt.jwt_verify(%s)", t1) == NOT_FOUND, "and in every later transaction"
    assert sub(a, token(2)) == "user2", "the remaining key still verifies"
    a.commit()


def test_a_transaction_that_already_holds_its_locks_refuses_a_key_deleted_since(db):
    """A statement that takes no new lock processes no invalidation by itself (a Citus worker's
    transaction runs every shard query of a coordinator transaction with the locks of the first).
    The key check takes in pending invalidations first, so a key deleted before the statement
    began is refused."""
    a, b = connect(db, autocommit=False), connect(db)
    t1 = token(1)
    load_keys(a, t1)
    a.commit()
    one(a, "SELECT count(*) FROM jwks")  # this transaction now holds every lock verification takes
    b.execute("DELETE FROM jwks WHERE id = 'k1'")
    assert sqlstate_of(a, "SELECT auth_jwt.jwt_verify(%s)", t1) == NOT_FOUND
    assert sub(a, token(2)) == "user2", "the remaining key still verifies"
    a.commit()


def test_reload_inside_a_statement_that_began_before_the_commit(db):
    """READ COMMITTED: the statement's snapshot predates the DELETE; the invalidation is consumed
    later in the same statement (at the next lock it takes). The deterministic probe."""
    su = connect(db)
    su.execute("INSERT INTO jwks VALUES ('k3', %s, 'x', now(), NULL, 'EdDSA', 'Ed25519')", (jwk(3),))
    su.execute(
        """CREATE FUNCTION slow_sub(tok text) RETURNS text LANGUAGE plpgsql STABLE AS $$
           BEGIN
             PERFORM pg_sleep(2);
             PERFORM count(*) FROM pg_catalog.pg_class;  -- takes a lock: invalidations are processed
             RETURN auth_jwt.jwt_claim_sub(tok);
           END $$"""
    )
    t3 = token(3, kid="k3")
    a, b = connect(db), connect(db)
    assert sub(a, t3) == "user3"
    answer = {}

    def slow():
        try:
            answer["sub"] = one(a, "SELECT slow_sub(%s)", t3)
        except psycopg.Error as e:
            answer["error"] = e.diag.message_primary

    th = threading.Thread(target=slow)
    th.start()
    time.sleep(0.5)
    b.execute("DELETE FROM jwks WHERE id = 'k3'")  # commits while slow_sub sleeps
    th.join()
    assert "sub" in answer or answer["error"] == NOT_FOUND[1], answer
    # Every transaction that starts now refuses k3, and a token freshly signed by it.
    assert sqlstate_of(a, "SELECT auth_jwt.jwt_verify(%s)", t3) == NOT_FOUND
    assert sqlstate_of(a, "SELECT auth_jwt.jwt_verify(%s)", token(3, kid="k3", sub="fresh")) == NOT_FOUND
    assert sub(a, token(1)) == "user1"


def test_key_replaced_inside_a_statement_that_began_before_the_commit(db):
    """The same interleaving with an UPDATE of "publicKey": the old key must stop, the new start."""
    su = connect(db)
    su.execute(
        """CREATE FUNCTION slow_sub(tok text) RETURNS text LANGUAGE plpgsql STABLE AS $$
           BEGIN
             PERFORM pg_sleep(2);
             PERFORM count(*) FROM pg_catalog.pg_class;
             RETURN auth_jwt.jwt_claim_sub(tok);
           END $$"""
    )
    a, b = connect(db), connect(db)
    old = token(1)
    assert sub(a, old) == "user1"
    answer = {}

    def slow():
        try:
            answer["sub"] = one(a, "SELECT slow_sub(%s)", old)
        except psycopg.Error as e:
            answer["error"] = e.diag.message_primary

    th = threading.Thread(target=slow)
    th.start()
    time.sleep(0.5)
    b.execute("UPDATE jwks SET \"publicKey\" = %s WHERE id = 'k1'", (jwk(7),))
    th.join()
    assert answer.get("sub") == "user1" or answer["error"] == BAD_SIGNATURE[1], answer
    assert sqlstate_of(a, "SELECT auth_jwt.jwt_verify(%s)", old) == BAD_SIGNATURE
    assert sub(a, token(7, kid="k1")) == "user7", "the new key material verifies"


def blocked_reload(db, how):
    """Leave backend `a` with a pending invalidation (k1 deleted), then make its reload fail by
    `how` while another session holds the key table locked. Returns a."""
    a, b, locker = connect(db, user="app_user"), connect(db), connect(db, autocommit=False)
    t1 = token(1)
    load_keys(a, t1)
    b.execute("DELETE FROM jwks WHERE id = 'k1'")
    locker.execute("LOCK TABLE jwks IN ACCESS EXCLUSIVE MODE")
    if how == "lock_timeout":
        a.execute("SET lock_timeout = '300ms'")
        assert sqlstate_of(a, "SELECT auth_jwt.jwt_verify(%s)", t1)[0] == "55P03"
        a.execute("RESET lock_timeout")
    elif how == "statement_timeout":
        a.execute("SET statement_timeout = '300ms'")
        assert sqlstate_of(a, "SELECT auth_jwt.jwt_verify(%s)", t1)[0] == "57014"
        a.execute("RESET statement_timeout")
    else:  # pg_cancel_backend
        pid = one(a, "SELECT pg_backend_pid()")
        threading.Timer(0.3, lambda: b.execute("SELECT pg_cancel_backend(%s)", (pid,))).start()
        assert sqlstate_of(a, "SELECT auth_jwt.jwt_verify(%s)", t1)[0] == "57014"
    locker.rollback()
    return a


@pytest.mark.parametrize("how", ["lock_timeout", "statement_timeout", "cancel"])
def test_a_reload_that_fails_leaves_the_keys_stale(db, how):
    """An ordinary role can make its own reload fail; that must not use up the invalidation."""
    a = blocked_reload(db, how)
    assert sqlstate_of(a, "SELECT auth_jwt.jwt_verify(%s)", token(1)) == NOT_FOUND
    assert sub(a, token(2)) == "user2"


def test_a_reload_that_fails_inside_a_savepoint_leaves_the_keys_stale(db):
    a, b, locker = connect(db, user="app_user", autocommit=False), connect(db), connect(db, autocommit=False)
    t1 = token(1)
    load_keys(a, t1)
    a.commit()
    b.execute("DELETE FROM jwks WHERE id = 'k1'")
    locker.execute("LOCK TABLE jwks IN ACCESS EXCLUSIVE MODE")
    a.execute("SET LOCAL lock_timeout = '300ms'")
    a.execute("SAVEPOINT s")
    with pytest.raises(psycopg.errors.LockNotAvailable):
        a.execute("SELECT auth_jwt.jwt_verify(%s)", (t1,))
    a.execute("ROLLBACK TO SAVEPOINT s")
    locker.rollback()
    assert sqlstate_of(a, "SELECT auth_jwt.jwt_verify(%s)", t1) == NOT_FOUND  # same transaction
    assert sqlstate_of(a, "SELECT auth_jwt.jwt_verify(%s)", t1) == NOT_FOUND  # and the next


def parallel_mode(c):
    version = one(c, "SELECT current_setting('server_version_num')::int")
    c.execute(f"SET {'debug_parallel_query' if version >= 160000 else 'force_parallel_mode'} = on")
    c.execute("SET parallel_setup_cost = 0")
    c.execute("SET parallel_tuple_cost = 0")


def test_an_imported_old_snapshot_does_not_revive_a_deleted_key(db):
    """SET TRANSACTION SNAPSHOT gives a new transaction a snapshot from before the DELETE; in
    parallel mode (where PostgreSQL forbids GetLatestSnapshot) the load must still read the
    latest state, not the query's snapshot."""
    old, b = connect(db, user="app_user", autocommit=False), connect(db)
    old.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    snapshot = one(old, "SELECT pg_export_snapshot()")
    b.execute("DELETE FROM jwks WHERE id = 'k1'")
    b.execute("ALTER FUNCTION auth_jwt.jwt_verify(text) PARALLEL SAFE")  # as a DBA may, so workers verify
    for parallel in (False, True):
        c = connect(db, user="app_user", autocommit=False)
        c.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        c.execute("SET TRANSACTION SNAPSHOT %s" % f"'{snapshot}'")
        if parallel:
            parallel_mode(c)
        with pytest.raises(psycopg.Error) as e:
            c.execute("SELECT auth_jwt.jwt_verify(t) FROM (VALUES (%s)) v(t)", (token(1),))
        assert (e.value.sqlstate, e.value.diag.message_primary) == NOT_FOUND, parallel
        c.rollback()
    old.rollback()


def test_keys_read_from_an_aborted_statements_own_rows_are_dropped(db):
    """A load can see the transaction's own uncommitted key rows before their AFTER ROW trigger
    has fired; if the statement then fails, those keys must not outlive it."""
    su = connect(db)
    su.execute(
        """CREATE FUNCTION public.probe(n int, tok text) RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
           BEGIN
             IF n = 2 THEN
               PERFORM auth_jwt.jwt_verify(tok);  -- sees k3, inserted by this statement
               RAISE EXCEPTION 'rotation aborted';
             END IF;
             RETURN true;
           END $$"""
    )
    t3 = token(3, kid="k3")
    c = connect(db)
    assert sub(c, token(1)) == "user1"
    with pytest.raises(psycopg.errors.RaiseException):
        c.execute(
            "INSERT INTO jwks SELECT 'k' || (n + 2), %s, 'x', now(), NULL, 'EdDSA', 'Ed25519' "
            "FROM generate_series(1, 2) n WHERE public.probe(n, %s)", (jwk(3), t3))
    time.sleep(1.1)  # past the unknown-kid reload rate limit, so only staleness could explain an accept
    assert sqlstate_of(c, "SELECT auth_jwt.jwt_verify(%s)", t3) == NOT_FOUND
    assert sqlstate_of(c, "SELECT auth_jwt.jwt_verify(%s)", t3) == NOT_FOUND
    # The same inside a subtransaction that is rolled back while the transaction commits.
    time.sleep(1.1)  # so that the probe's unknown kid may reload
    c.execute(
        """DO $$ BEGIN
             BEGIN
               INSERT INTO jwks SELECT 'k' || (n + 2), %s, 'x', now(), NULL, 'EdDSA', 'Ed25519'
                 FROM generate_series(1, 2) n WHERE public.probe(n, %s);
             EXCEPTION WHEN raise_exception THEN NULL;
             END;
           END $$""".replace("%s", "{}").format("'" + jwk(3) + "'", "'" + t3 + "'")
    )
    time.sleep(1.1)
    assert sqlstate_of(c, "SELECT auth_jwt.jwt_verify(%s)", t3) == NOT_FOUND
    assert sub(c, token(1)) == "user1"


def test_an_interrupted_load_reports_no_rust_backtrace():
    """With RUST_BACKTRACE in the server's environment, pgrx would attach a Rust backtrace to
    errors raised inside the extension (here: a key load cancelled while it waits for a lock)."""
    from conftest import JWKS_DDL, extra_cluster

    with extra_cluster(54338, env={"RUST_BACKTRACE": "1", "RUST_LIB_BACKTRACE": "1"}) as port:
        su = connect("postgres", port=port)
        su.execute(JWKS_DDL)
        su.execute("INSERT INTO jwks VALUES ('k1', %s, 'x', now(), NULL, 'EdDSA', 'Ed25519')", (jwk(1),))
        su.execute("SET client_min_messages = warning")
        su.execute("CREATE EXTENSION auth_jwt")
        su.execute("ALTER DATABASE postgres SET auth_jwt.issuer = '*'")
        su.execute("ALTER DATABASE postgres SET auth_jwt.audience = '*'")
        a = connect("postgres", port=port)
        locker = connect("postgres", port=port, autocommit=False)
        locker.execute("LOCK TABLE jwks IN ACCESS EXCLUSIVE MODE")
        a.execute("SET lock_timeout = '200ms'")
        with pytest.raises(psycopg.errors.LockNotAvailable) as e:
            a.execute("SELECT auth_jwt.jwt_verify(%s)", (token(1),))
        assert not e.value.diag.message_detail, e.value.diag.message_detail
        locker.rollback()
        with pytest.raises(psycopg.Error) as e:
            a.execute("SELECT auth_jwt.jwt_verify(%s)", (token(1, kid="nope"),))
        assert "rustc" not in (e.value.diag.message_detail or "") and "backtrace" not in (e.value.diag.message_detail or "")


def test_a_key_table_replaced_by_its_schemas_owner_is_never_read_as_the_old_owner(db):
    """Red-team finding: the database owner (who owns schema public) drops the key table in a
    transaction it holds open; a backend with stale keys starts to reload them and waits; the
    owner then puts a view calling its own function in the table's place and commits. The reload
    must read the view as its owner, never as the old table's (the superuser). (Whoever can
    replace the key table can mint identities: SECURITY.md says so.)"""
    from conftest import EVIL, database_owner, notices_of

    with database_owner(db) as (role, dbo):
        dbo.execute(EVIL)
        victim = connect(db)
        seen = notices_of(victim)
        assert one(victim, "SELECT auth_jwt.jwt_verify(%s)->>'sub'", token(1)) == "user1"
        dbo.execute("CREATE SCHEMA stale_keys")  # any schema change makes every backend reload
        holder = connect(db, role, autocommit=False)
        holder.execute("DROP TABLE public.jwks CASCADE")
        result = {}

        def verify():
            try:
                result["sub"] = one(victim, "SELECT auth_jwt.jwt_verify(%s)->>'sub'", token(1))
            except psycopg.Error as e:
                result["sub"] = e.diag.message_primary

        waiting = threading.Thread(target=verify)
        waiting.start()
        time.sleep(0.5)  # the victim's reload now waits for the dropped table's lock
        holder.execute("CREATE VIEW public.jwks AS SELECT 'k1'::text AS id, %s::text AS \"publicKey\", 'x'::text AS \"privateKey\", "
                       "now() AS \"createdAt\", NULL::timestamptz AS \"expiresAt\", 'EdDSA'::text AS alg, 'Ed25519'::text AS crv "
                       "WHERE public.evil()" % psycopg.sql.quote(jwk(1)))
        holder.commit()
        waiting.join(timeout=10)
        holder.close()
        assert "evil() runs as postgres" not in seen, (seen, result)
        assert f"evil() runs as {role}" in seen, (seen, result)
        assert result.get("sub") == "user1"
