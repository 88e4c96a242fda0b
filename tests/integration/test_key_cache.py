"""Key cache freshness across backends: committed changes to the key table are seen by every
backend's next transaction, with no query per call on the warm path."""

import time

from conftest import connect, jwk, one, sqlstate_of, token


def verify_ok(conn, tok):
    return one(conn, "SELECT auth_jwt.jwt_verify(%s)->>'sub'", tok)


def stats(conn):
    return conn.execute("SELECT verifications, cache_hits, key_loads, unknown_kid_reloads FROM auth_jwt.stats()").fetchone()


def test_delete_in_another_backend_revokes_at_next_transaction(db):
    a, b = connect(db), connect(db)
    t1 = token(1)
    assert verify_ok(a, t1) == "user1"
    b.execute("DELETE FROM jwks WHERE id = 'k1'")
    state, msg = sqlstate_of(a, "SELECT auth_jwt.jwt_verify(%s)", t1)
    assert (state, msg) == ("28000", "unable to find matching signing key")


def test_insert_update_truncate_seen_by_other_backends(db):
    a, b = connect(db), connect(db)
    t3 = token(3, kid="k3")
    t2 = token(2)
    assert verify_ok(a, t2) == "user2"
    b.execute("INSERT INTO jwks VALUES ('k3', %s, '\"x\"', now(), NULL, NULL, NULL)", (jwk(3),))
    assert verify_ok(a, t3) == "user3"
    # A key rotated in place: the old material must stop verifying.
    b.execute("UPDATE jwks SET \"publicKey\" = %s WHERE id = 'k2'", (jwk(9),))
    assert sqlstate_of(a, "SELECT auth_jwt.jwt_verify(%s)", t2) == ("28000", "invalid token signature")
    b.execute("TRUNCATE jwks")
    assert sqlstate_of(a, "SELECT auth_jwt.jwt_verify(%s)", t3)[1] == "unable to find matching signing key"


def test_uncommitted_change_is_not_seen_until_commit(db):
    a, b = connect(db), connect(db, autocommit=False)
    t1 = token(1)
    assert verify_ok(a, t1) == "user1"
    b.execute("DELETE FROM jwks WHERE id = 'k1'")
    assert verify_ok(a, t1) == "user1", "not committed yet"
    b.commit()
    assert sqlstate_of(a, "SELECT auth_jwt.jwt_verify(%s)", t1)[0] == "28000"


def test_an_open_transaction_sees_the_change_at_its_next_transaction(db):
    a, b = connect(db, autocommit=False), connect(db)
    t1 = token(1)
    assert verify_ok(a, t1) == "user1"
    b.execute("DELETE FROM jwks WHERE id = 'k1'")
    a.commit()
    assert sqlstate_of(a, "SELECT auth_jwt.jwt_verify(%s)", t1)[0] == "28000"


def test_warm_path_runs_no_key_query(db):
    a = connect(db)
    t1, t1b = token(1), token(1, sub="other")
    verify_ok(a, t1)
    loads = stats(a)[2]
    for _ in range(200):
        verify_ok(a, t1)
        verify_ok(a, t1b)
    v, hits, loads_after, _ = stats(a)
    assert loads_after == loads, "no key load on the warm path, across 400 transactions"
    assert v == 2 and hits >= 399


def test_unknown_kid_flood_is_rate_limited(db):
    a = connect(db)
    verify_ok(a, token(1))
    before = stats(a)[3]
    start = time.monotonic()
    for i in range(300):
        assert sqlstate_of(a, "SELECT auth_jwt.jwt_verify(%s)", token(1, kid=f"random{i}"))[1] == "unable to find matching signing key"
    elapsed = time.monotonic() - start
    reloads = stats(a)[3] - before
    assert 1 <= reloads <= int(elapsed) + 1, f"{reloads} reloads in {elapsed:.1f}s"


def test_new_key_is_found_by_unknown_kid_reload_even_without_invalidation(db):
    # Drop the trigger: only the unknown-kid reload (or the per-transaction fallback) can find k3.
    c = connect(db)
    c.execute("DROP TRIGGER auth_jwt_key_change ON jwks")
    a, b = connect(db), connect(db)
    assert verify_ok(a, token(1)) == "user1"
    b.execute("INSERT INTO jwks VALUES ('k3', %s, '\"x\"', now(), NULL, NULL, NULL)", (jwk(3),))
    assert verify_ok(a, token(3, kid="k3")) == "user3"


def test_unwatched_table_falls_back_to_reading_keys_each_transaction(db):
    c = connect(db)
    c.execute("DROP TRIGGER auth_jwt_key_change ON jwks")
    a, b = connect(db), connect(db)
    notices = []
    a.add_notice_handler(lambda d: notices.append(d.message_primary))
    t1 = token(1)
    assert verify_ok(a, t1) == "user1"
    assert any("not watched" in n for n in notices), notices
    b.execute("DELETE FROM jwks WHERE id = 'k1'")
    assert sqlstate_of(a, "SELECT auth_jwt.jwt_verify(%s)", t1)[0] == "28000"
    # watch_key_table() restores the trigger; afterwards the warm path needs no reload.
    assert c.execute("SELECT action FROM auth_jwt.watch_key_table()").fetchall() == [("trigger created",)]
    a2 = connect(db)
    t2 = token(2)
    verify_ok(a2, t2)
    loads = stats(a2)[2]
    for _ in range(20):
        verify_ok(a2, t2)
    assert stats(a2)[2] == loads
