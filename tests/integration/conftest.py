"""Fixtures for tests that need several sessions, other roles, or processes around the
cluster that scripts/test started (PGHOST/PGPORT in the environment)."""

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
import uuid

import psycopg
import pytest

ISS = "https://app.example.com"
MINT = os.environ["MINT"]


def mint(*args: str) -> str:
    return subprocess.run([MINT, *args], check=True, capture_output=True, text=True).stdout.strip()


def token(seed: int = 1, **claims: str) -> str:
    return mint("token", str(seed), *(f"{k}={v}" for k, v in claims.items()))


def jwk(seed: int) -> str:
    return mint("jwk", str(seed))


def dsn(dbname: str, user: str = "postgres", port=None, **opts: str) -> str:
    parts = [f"host={os.environ['PGHOST']}", f"port={port or os.environ['PGPORT']}", f"dbname={dbname}", f"user={user}"]
    if opts.get("options"):
        parts.append(f"options='{opts['options']}'")
    return " ".join(parts)


def connect(dbname: str, user: str = "postgres", autocommit: bool = True, port=None, **opts: str) -> psycopg.Connection:
    conn = psycopg.connect(dsn(dbname, user, port, **opts), autocommit=autocommit)
    return conn


def one(conn: psycopg.Connection, sql: str, *params):
    return conn.execute(sql, params or None).fetchone()[0]


def sqlstate_of(conn: psycopg.Connection, sql: str, *params) -> tuple[str, str]:
    """Run sql expecting an error; return (sqlstate, message)."""
    with pytest.raises(psycopg.Error) as e:
        conn.execute(sql, params or None)
    if not conn.autocommit:
        conn.rollback()
    return e.value.sqlstate, e.value.diag.message_primary


JWKS_DDL = """
CREATE TABLE public.jwks ("id" text not null primary key, "publicKey" text not null,
  "privateKey" text not null, "createdAt" timestamptz not null, "expiresAt" timestamptz,
  "alg" text, "crv" text)"""


@pytest.fixture
def db():
    """A fresh database with Better Auth's jwks table (keys k1, k2), auth_jwt, and settings."""
    name = "it_" + uuid.uuid4().hex[:10]
    with connect("postgres") as admin:
        admin.execute(f"CREATE DATABASE {name}")
    with connect(name) as c:
        c.execute(JWKS_DDL)
        for seed in (1, 2):
            c.execute("INSERT INTO jwks VALUES (%s, %s, '\"x\"', now(), NULL, 'EdDSA', 'Ed25519')", (f"k{seed}", jwk(seed)))
        c.execute("SET client_min_messages = warning")
        c.execute("CREATE EXTENSION auth_jwt")
        c.execute(f"ALTER DATABASE {name} SET auth_jwt.issuer = '{ISS}'")
        c.execute(f"ALTER DATABASE {name} SET auth_jwt.audience = '{ISS}'")
        c.execute("DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'app_user') THEN CREATE ROLE app_user LOGIN; END IF; END $$")
    yield name
    with connect("postgres") as admin:
        admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def user_uuid(seed: int) -> str:
    """The uuid claim `mint token SEED` puts in its tokens."""
    return f"00000000-0000-4000-8000-{seed:012}"


@pytest.fixture
def app_db():
    """A fresh database with sql/better_auth_schema.sql and sql/example_app.sql: tasks with RLS, roles
    anon/authenticated/authenticator; keys k1, k2; users user1, user2 with one task each."""
    name = "app_" + uuid.uuid4().hex[:10]
    with connect("postgres") as admin:
        admin.execute(f"CREATE DATABASE {name}")
    with connect(name) as c:
        c.execute("SET client_min_messages = warning")
        for f in ("better_auth_schema.sql", "example_app.sql"):
            c.execute(open(os.path.join(ROOT, "sql", f)).read())
        for seed in (1, 2):
            c.execute("INSERT INTO jwks VALUES (%s, %s, '\"x\"', now(), NULL, 'EdDSA', 'Ed25519')", (f"k{seed}", jwk(seed)))
            c.execute(
                'INSERT INTO "user" (id, name, email, "emailVerified", uuid) VALUES (%s, %s, %s, true, %s)',
                (f"user{seed}", f"User {seed}", f"user{seed}@example.com", user_uuid(seed)),
            )
            c.execute("INSERT INTO tasks (user_id, title) VALUES (%s, %s)", (user_uuid(seed), f"task of user{seed}"))
        c.execute("SELECT auth_jwt.watch_key_table()")
        c.execute(f"ALTER DATABASE {name} SET auth_jwt.issuer = '{ISS}'")
        c.execute(f"ALTER DATABASE {name} SET auth_jwt.audience = '{ISS}'")
    yield name
    with connect("postgres") as admin:
        admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


def grant_stats(dbname: str, role: str) -> None:
    """The operators' grant (auth_jwt.stats() is not PUBLIC's): for tests that count, as `role`,
    what its own backend did."""
    with connect(dbname) as su:
        su.execute(f"GRANT EXECUTE ON FUNCTION auth_jwt.stats() TO {role}")


def as_request(conn, tok=None, role="authenticated", via="setting", header="authorization"):
    """Start a PostgREST-style transaction: SET LOCAL ROLE, then the token, transaction-local."""
    conn.execute("BEGIN")
    conn.execute(f"SET LOCAL ROLE {role}")
    if tok is not None:
        if via == "setting":
            conn.execute("SELECT set_config('auth_jwt.token', %s, true)", (tok,))
        else:
            import json

            conn.execute("SELECT set_config('request.headers', %s, true)", (json.dumps({header: f"Bearer {tok}"}),))


PGBIN = os.environ.get("PGBIN", "/usr/lib/postgresql/15/bin")


def pg(*args: str, **kw) -> subprocess.CompletedProcess:
    """Run a PostgreSQL program as the postgres user (the server refuses root)."""
    return subprocess.run(["runuser", "-u", "postgres", "--", *args], check=True, capture_output=True, text=True, **kw)


@contextlib.contextmanager
def extra_cluster(port: int, conf: str = "", env: dict | None = None):
    """A throwaway cluster of its own (initdb, start, stop), for tests that need server-level
    settings such as shared_preload_libraries, or a server environment (`env`). Yields the
    port; the socket is PGHOST's."""
    data = tempfile.mkdtemp(prefix="auth_jwt-extra-")
    shutil.chown(data, "postgres", "postgres")
    os.chmod(data, 0o700)
    pg(f"{PGBIN}/initdb", "-D", data, "-A", "trust", "-U", "postgres")
    with open(os.path.join(data, "postgresql.conf"), "a") as f:
        f.write(f"\nport = {port}\nlisten_addresses = ''\nunix_socket_directories = '{os.environ['PGHOST']}'\nfsync = off\n{conf}\n")
    pg(f"{PGBIN}/pg_ctl", "-D", data, "-l", f"{data}/log", "-w", "start", env={**os.environ, **(env or {})})
    try:
        yield port
    finally:
        subprocess.run(["runuser", "-u", "postgres", "--", f"{PGBIN}/pg_ctl", "-D", data, "-m", "immediate", "-w", "stop"],
                       capture_output=True)
        shutil.rmtree(data, ignore_errors=True)


@contextlib.contextmanager
def database_owner(db: str):
    """A login role that owns `db`, and so (PostgreSQL 15+) its public schema: it may drop and
    replace any relation there. Yields (role, its connection); undone afterwards."""
    role = "dbo_" + uuid.uuid4().hex[:8]
    su = connect(db)
    su.execute(f"CREATE ROLE {role} LOGIN")
    su.execute(f"ALTER DATABASE {db} OWNER TO {role}")
    c = connect(db, role)
    try:
        yield role, c
    finally:
        c.close()
        su.execute(f"ALTER DATABASE {db} OWNER TO postgres")
        su.execute(f"REASSIGN OWNED BY {role} TO postgres")
        su.execute(f"DROP OWNED BY {role}")
        su.execute(f"DROP ROLE {role}")


EVIL = """CREATE FUNCTION public.evil() RETURNS bool LANGUAGE plpgsql VOLATILE AS $$
BEGIN RAISE WARNING 'evil() runs as %', current_user; RETURN true; END $$"""


def notices_of(conn) -> list[str]:
    seen: list[str] = []
    conn.add_notice_handler(lambda d: seen.append(d.message_primary))
    return seen


def wait_for(conn, query):
    for _ in range(300):
        if one(conn, query):
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for: {query}")


@contextlib.contextmanager
def subscribed(db: str, table: str, ddl: str, rows: list[str], count: int):
    """Better Auth's database, a publication of its `table` (created by `ddl`, filled by the
    statements `rows`), and a subscription into `db`'s own `table`, emptied first, in the test
    cluster. Yields (publisher, subscriber) connections once the `count` rows have arrived."""
    pub = "pub_" + uuid.uuid4().hex[:8]
    slot = "slot_" + uuid.uuid4().hex[:8]
    with connect("postgres") as admin:
        admin.execute(f"CREATE DATABASE {pub}")
    p = connect(pub)
    p.execute(ddl)
    for statement in rows:
        p.execute(statement)
    p.execute(f"CREATE PUBLICATION {pub} FOR TABLE {table}")
    p.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,))
    s = connect(db)
    s.execute(f"TRUNCATE {table}")
    s.execute(
        f"CREATE SUBSCRIPTION {pub} CONNECTION 'host={os.environ['PGHOST']} port={os.environ['PGPORT']} "
        f"dbname={pub} user=postgres' PUBLICATION {pub} WITH (create_slot = false, slot_name = '{slot}')"
    )
    wait_for(s, f"SELECT count(*) = {count} FROM {table}")
    try:
        yield p, s
    finally:
        s.execute(f"ALTER SUBSCRIPTION {pub} DISABLE")
        s.execute(f"ALTER SUBSCRIPTION {pub} SET (slot_name = NONE)")
        s.execute(f"DROP SUBSCRIPTION {pub}")
        for _ in range(50):
            try:
                p.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
                break
            except psycopg.errors.ObjectInUse:
                time.sleep(0.1)
        p.close()
        with connect("postgres") as admin:
            admin.execute(f"DROP DATABASE {pub} WITH (FORCE)")
