"""Operations: key rotation under load, and a hot standby that verifies and enforces policies
exactly as its primary (the verification path writes nothing)."""

import os
import re
import shutil
import subprocess
import tempfile
import threading
import time

import psycopg
import pytest

from conftest import PGBIN, as_request, connect, grant_stats, jwk, one, token, user_uuid


def test_rotation_under_load(db):
    """pgbench verifies a token of a key that stays, while other keys are inserted and deleted
    around it; then tokens of a deleted key are refused right after the delete commits."""
    c = connect(db)
    stable = token(1)
    script = tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False)
    script.write(f"SELECT auth_jwt.jwt_verify('{stable}');\n")
    script.close()
    os.chmod(script.name, 0o644)
    load = subprocess.Popen(
        [f"{PGBIN}/pgbench", "-n", "-c", "2", "-j", "2", "-T", "6", "-f", script.name,
         "-h", os.environ["PGHOST"], "-p", os.environ["PGPORT"], "-U", "postgres", db],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    checker = connect(db)
    rotations = 0
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        seed = 10 + rotations % 200
        c.execute("INSERT INTO jwks VALUES (%s, %s, 'x', now(), NULL, 'EdDSA', 'Ed25519')", (f"k{seed}", jwk(seed)))
        fresh = token(seed, kid=f"k{seed}")
        assert one(checker, "SELECT auth_jwt.jwt_verify(%s)->>'sub'", fresh) == f"user{seed}", "a new key works at once"
        c.execute("DELETE FROM jwks WHERE id = %s", (f"k{seed}",))
        with pytest.raises(psycopg.Error) as e:
            checker.execute("SELECT auth_jwt.jwt_verify(%s)", (fresh,))
        assert e.value.diag.message_primary == "unable to find matching signing key", "refused right after the delete"
        rotations += 1
    out, _ = load.communicate(timeout=60)
    assert load.returncode == 0, out
    done = int(re.search(r"number of transactions actually processed: (\d+)", out).group(1))
    failed = re.search(r"number of failed transactions: (\d+)", out)
    assert done > 1000 and (failed is None or int(failed.group(1)) == 0), out
    assert rotations >= 5, rotations


@pytest.fixture
def standby(app_db):
    """A streaming hot standby of the test cluster, on its own port."""
    port = int(os.environ["PGPORT"]) + 100
    data = tempfile.mkdtemp(prefix="auth_jwt-standby-")
    shutil.chown(data, "postgres", "postgres")
    os.chmod(data, 0o700)
    subprocess.run(
        ["runuser", "-u", "postgres", "--", f"{PGBIN}/pg_basebackup", "-h", "127.0.0.1", "-p", os.environ["PGPORT"],
         "-U", "postgres", "-D", data, "-R", "-X", "stream", "-c", "fast"],
        check=True, capture_output=True,
    )
    with open(os.path.join(data, "postgresql.conf"), "a") as f:
        f.write(f"\nport = {port}\nhot_standby = on\nunix_socket_directories = '{os.environ['PGHOST']}'\n")
    subprocess.run(["runuser", "-u", "postgres", "--", f"{PGBIN}/pg_ctl", "-D", data, "-l", f"{data}/log", "-w", "start"],
                   check=True, capture_output=True)
    yield app_db, port
    subprocess.run(["runuser", "-u", "postgres", "--", f"{PGBIN}/pg_ctl", "-D", data, "-m", "immediate", "-w", "stop"], capture_output=True)
    shutil.rmtree(data, ignore_errors=True)


def replica(db, port, user="postgres"):
    return psycopg.connect(f"host={os.environ['PGHOST']} port={port} dbname={db} user={user}", autocommit=True)


def caught_up(primary, standby_conn):
    lsn = one(primary, "SELECT pg_current_wal_lsn()")
    for _ in range(200):
        if one(standby_conn, "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", lsn):
            return
        time.sleep(0.05)
    raise AssertionError("standby did not catch up")


def test_hot_standby_verifies_and_enforces_policies(standby):
    db, port = standby
    primary = connect(db)
    r = replica(db, port)
    caught_up(primary, r)
    assert one(r, "SELECT pg_is_in_recovery()") is True
    t1, t2 = token(1), token(2)
    assert one(r, "SELECT auth_jwt.jwt_verify(%s)->>'sub'", t1) == "user1"
    app = replica(db, port, "authenticator")
    for seed, tok in ((1, t1), (2, t2)):
        as_request(app, tok)
        assert [x[0] for x in app.execute("SELECT title FROM tasks").fetchall()] == [f"task of user{seed}"]
        assert one(app, "SELECT auth_jwt.jwt_claim_uuid()::text") == user_uuid(seed)
        app.execute("COMMIT")
    # A key deleted on the primary is refused on the standby once replayed: the trigger's
    # invalidation travels in the commit record.
    primary.execute("DELETE FROM jwks WHERE id = 'k1'")
    caught_up(primary, r)
    with pytest.raises(psycopg.Error) as e:
        r.execute("SELECT auth_jwt.jwt_verify(%s)", (t1,))
    assert e.value.diag.message_primary == "unable to find matching signing key"
    as_request(app, t1)
    with pytest.raises(psycopg.Error, match="unable to find matching signing key"):
        app.execute("SELECT title FROM tasks")
    app.execute("ROLLBACK")
    # And a new key appears there without any restart.
    primary.execute("INSERT INTO jwks VALUES ('k3', %s, 'x', now(), NULL, NULL, NULL)", (jwk(3),))
    caught_up(primary, r)
    assert one(r, "SELECT auth_jwt.jwt_verify(%s)->>'sub'", token(3, kid="k3")) == "user3"


def test_hot_standby_sees_a_sign_out_once_replayed(standby):
    """auth_jwt.require_session on a replica: the lookup writes nothing, the live session is kept
    between transactions, and a session deleted on the primary is refused on the standby once the
    deletion (and the invalidation its trigger sent) is replayed."""
    db, port = standby
    primary = connect(db)
    primary.execute("INSERT INTO session (id, \"expiresAt\", token, \"updatedAt\", \"userId\") "
                    "VALUES ('s1', now() + interval '1 day', 'secret', now(), 'user1')")
    primary.execute(f"ALTER DATABASE {db} SET auth_jwt.require_session = on")
    primary.execute("GRANT EXECUTE ON FUNCTION auth_jwt.stats() TO authenticated")
    t1 = token(1, claims='{"sid":"s1"}')
    r = replica(db, port)
    caught_up(primary, r)
    app = replica(db, port, "authenticator")
    lookups = []
    for _ in range(3):
        as_request(app, t1)
        assert [x[0] for x in app.execute("SELECT title FROM tasks").fetchall()] == ["task of user1"]
        lookups.append(one(app, "SELECT session_lookups FROM auth_jwt.stats()"))
        app.execute("COMMIT")
    assert lookups == [1, 1, 1], "the live session is kept between transactions on the standby too"
    primary.execute("DELETE FROM session WHERE id = 's1'")
    caught_up(primary, r)
    as_request(app, t1)
    with pytest.raises(psycopg.Error) as e:
        app.execute("SELECT title FROM tasks")
    assert e.value.diag.message_primary == "session has ended"
    app.execute("ROLLBACK")


def test_hot_standby_fetches_keys_from_the_jwks_url(standby):
    """auth_jwt.jwks_url on a replica: the standby's backends fetch the document themselves
    (nothing is written) and enforce the policies with those keys."""
    from test_jwks_url import Endpoint, doc, entry

    db, port = standby
    ep = Endpoint()
    ep.set(doc(entry(1)))
    try:
        primary = connect(db)
        primary.execute(f"ALTER DATABASE {db} SET auth_jwt.jwks_url = '{ep.url}'")
        grant_stats(db, "authenticator")
        r = replica(db, port)
        caught_up(primary, r)
        app = replica(db, port, "authenticator")
        as_request(app, token(1))
        assert [x[0] for x in app.execute("SELECT title FROM tasks").fetchall()] == ["task of user1"]
        app.execute("COMMIT")
        assert one(app, "SELECT jwks_fetches FROM auth_jwt.stats()") == 1
        assert ep.count() == 1
        as_request(app, token(2))  # k2 is in the table, not in the document
        with pytest.raises(psycopg.Error, match="unable to find matching signing key"):
            app.execute("SELECT title FROM tasks")
        app.execute("ROLLBACK")
    finally:
        ep.close()
