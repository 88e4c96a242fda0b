"""A real PgBouncer in transaction pooling mode, one server connection shared by two clients:
interleaved transactions never see each other's rows, and a token one client leaves behind with
a session-level SET never authenticates the other."""

import contextlib
import os
import shutil
import subprocess
import tempfile
import threading
import time

import psycopg
import pytest

from conftest import token

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
PORT = int(os.environ["PGPORT"]) + 10000


@pytest.fixture
def bouncer(app_db):
    with pgbouncer(app_db):
        yield app_db


@contextlib.contextmanager
def pgbouncer(app_db):
    d = tempfile.mkdtemp(prefix="auth_jwt-pgbouncer-")
    shutil.chown(d, "postgres", "postgres")
    with open(os.path.join(d, "userlist.txt"), "w") as f:
        f.write('"authenticator" ""\n')
    with open(os.path.join(d, "pgbouncer.ini"), "w") as f:
        f.write(
            f"""[databases]
{app_db} = host=127.0.0.1 port={os.environ['PGPORT']} dbname={app_db}
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {PORT}
unix_socket_dir =
auth_type = trust
auth_file = {d}/userlist.txt
pool_mode = transaction
default_pool_size = 1
max_client_conn = 50
logfile = {d}/pgbouncer.log
pidfile = {d}/pgbouncer.pid
"""
        )
    proc = subprocess.Popen(["runuser", "-u", "postgres", "--", PGBOUNCER, os.path.join(d, "pgbouncer.ini")])
    for _ in range(100):
        try:
            psycopg.connect(f"host=127.0.0.1 port={PORT} dbname={app_db} user=authenticator").close()
            break
        except psycopg.OperationalError:
            time.sleep(0.05)
    try:
        yield app_db
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(d, ignore_errors=True)


def client(db):
    c = psycopg.connect(f"host=127.0.0.1 port={PORT} dbname={db} user=authenticator", autocommit=True)
    c.prepare_threshold = None  # no server-side prepared statements through a transaction pooler
    return c


def request(c, tok):
    """One PostgREST-style transaction; returns (backend pid, titles)."""
    with c.transaction():
        c.execute("SET LOCAL ROLE authenticated")
        if tok:
            c.execute("SELECT set_config('auth_jwt.token', %s, true)", (tok,))
        pid = c.execute("SELECT pg_backend_pid()").fetchone()[0]
        return pid, sorted(r[0] for r in c.execute("SELECT title FROM tasks").fetchall())


def test_interleaved_clients_share_a_backend_and_never_leak(bouncer):
    a, b = client(bouncer), client(bouncer)
    ta, tb = token(1), token(2)
    pids = set()
    for i in range(50):
        pid, rows = request(a, ta)
        pids.add(pid)
        assert rows == ["task of user1"]
        pid, rows = request(b, tb)
        pids.add(pid)
        assert rows == ["task of user2"]
        pid, rows = request(b if i % 2 else a, None)
        assert rows == [], "a transaction without a token is anonymous, whoever ran before"
    assert len(pids) == 1, "both clients really shared one server connection"


def test_session_set_left_behind_does_not_authenticate_the_next_client(bouncer):
    a, b = client(bouncer), client(bouncer)
    a.execute("SET auth_jwt.token = %s" % "'" + token(1) + "'")  # a client's mistake: session scope
    with pytest.raises(psycopg.Error) as e:
        request(b, None)
    assert e.value.diag.message_primary == "token was set for the session, not the transaction"
    # And the client that made the mistake is told too, rather than silently authenticated.
    with pytest.raises(psycopg.Error):
        request(a, None)


def test_concurrent_clients(bouncer):
    errors = []

    def worker(seed):
        try:
            c = client(bouncer)
            tok = token(seed)
            for _ in range(100):
                _, rows = request(c, tok)
                assert rows == [f"task of user{seed}"], rows
        except Exception as ex:  # noqa: BLE001 - reported below
            errors.append(ex)

    threads = [threading.Thread(target=worker, args=(s,)) for s in (1, 2, 1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_sign_out_through_pgbouncer(app_db):
    """auth_jwt.require_session behind a transaction pooler: two clients on one server connection;
    one user's sign-out refuses that token at its next transaction, the other's keeps working."""
    su = psycopg.connect(f"host={os.environ['PGHOST']} port={os.environ['PGPORT']} dbname={app_db} user=postgres",
                         autocommit=True)
    for sid, user in (("s1", "user1"), ("s2", "user2")):
        su.execute("INSERT INTO session (id, \"expiresAt\", token, \"updatedAt\", \"userId\") "
                   "VALUES (%s, now() + interval '1 day', %s, now(), %s)", (sid, "secret-" + sid, user))
    su.execute(f"ALTER DATABASE {app_db} SET auth_jwt.require_session = on")
    with pgbouncer(app_db):
        a, b = client(app_db), client(app_db)
        ta, tb = token(1, claims='{"sid":"s1"}'), token(2, claims='{"sid":"s2"}')
        pids = set()
        for _ in range(5):
            pid, rows = request(a, ta)
            pids.add(pid)
            assert rows == ["task of user1"]
            pid, rows = request(b, tb)
            pids.add(pid)
            assert rows == ["task of user2"]
        su.execute("DELETE FROM session WHERE id = 's1'")
        with pytest.raises(psycopg.Error) as e:
            request(a, ta)
        assert e.value.diag.message_primary == "session has ended"
        pid, rows = request(b, tb)
        pids.add(pid)
        assert rows == ["task of user2"]
        assert len(pids) == 1, "both clients shared one server connection"
