"""A real Citus cluster, started by scripts/test-citus: a coordinator and two workers that
preload citus and auth_jwt. Each fixture makes a fresh database on all three
nodes, with Citus installed and the workers added."""

import os
import subprocess
import uuid

import psycopg
from psycopg import sql
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HOST = os.environ["CITUS_HOST"]
COORDINATOR = int(os.environ["CITUS_COORDINATOR"])
WORKERS = [int(p) for p in os.environ["CITUS_WORKERS"].split()]
NODES = [COORDINATOR, *WORKERS]
MINT = os.environ["MINT"]
ISS = "https://app.example.com"
NOT_FOUND = ("28000", "unable to find matching signing key")

ALICE = "00000000-0000-4000-8000-00000000a11c"
BOB = "00000000-0000-4000-8000-000000000b0b"


def mint(*args: str) -> str:
    return subprocess.run([MINT, *args], check=True, capture_output=True, text=True).stdout.strip()


def token(seed: int = 1, **claims: str) -> str:
    return mint("token", str(seed), *(f"{k}={v}" for k, v in claims.items()))


def jwk(seed: int) -> str:
    return mint("jwk", str(seed))


def alice(seed: int = 1, **claims: str) -> str:
    return token(seed, sub="alice", uuid=ALICE, **claims)


def bob(seed: int = 1, **claims: str) -> str:
    return token(seed, sub="bob", uuid=BOB, **claims)


def connect(db: str, port: int = COORDINATOR, user: str = "postgres", autocommit: bool = True, **kw) -> psycopg.Connection:
    return psycopg.connect(host=HOST, port=port, dbname=db, user=user, autocommit=autocommit, **kw)


def one(conn: psycopg.Connection, sql: str, *params):
    return conn.execute(sql, params or None).fetchone()[0]


def error_of(conn: psycopg.Connection, sql: str, *params) -> psycopg.Error:
    """Run sql expecting an error; return it (the transaction, if any, is rolled back)."""
    with pytest.raises(psycopg.Error) as e:
        conn.execute(sql, params or None)
    if not conn.autocommit:
        conn.rollback()
    return e.value


def sql_file(name: str) -> str:
    with open(os.path.join(ROOT, "sql", name)) as f:
        return f.read()


@pytest.fixture(scope="session", autouse=True)
def roles():
    """The example's roles on every node (roles are per cluster; each node is a cluster)."""
    for port in NODES:
        with connect("postgres", port) as c:
            c.execute(
                """DO $$ BEGIN
                     IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'anon') THEN CREATE ROLE anon; END IF;
                     IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'authenticated') THEN CREATE ROLE authenticated; END IF;
                     IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'authenticator') THEN
                       CREATE ROLE authenticator LOGIN NOINHERIT; END IF;
                   END $$"""
            )


def create_cluster_db() -> str:
    """A fresh database on every node, Citus in each, the workers added to the coordinator."""
    name = "c_" + uuid.uuid4().hex[:10]
    for port in NODES:
        with connect("postgres", port) as c:
            c.execute(f"CREATE DATABASE {name}")
        with connect(name, port) as c:
            c.execute("SET client_min_messages = warning")
            c.execute("CREATE EXTENSION citus")
    with connect(name) as c:
        c.execute("SET client_min_messages = warning")
        c.execute("SELECT citus_set_coordinator_host(%s, %s)", (HOST, COORDINATOR))
        for port in WORKERS:
            c.execute("SELECT citus_add_node(%s, %s)", (HOST, port))
        c.execute(f"ALTER DATABASE {name} SET auth_jwt.issuer = '{ISS}'")
        c.execute(f"ALTER DATABASE {name} SET auth_jwt.audience = '{ISS}'")
    return name


def drop_cluster_db(name: str) -> None:
    for port in NODES:
        with connect("postgres", port) as c:
            c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def psql(db: str, *args: str) -> str:
    cmd = [os.path.join(os.environ["PGBIN"], "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1"]
    cmd += ["-h", HOST, "-p", str(COORDINATOR), "-U", "postgres", "-d", db, *args]
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def insert_key(c: psycopg.Connection, seed: int, kid: str | None = None) -> None:
    c.execute(
        "INSERT INTO jwks VALUES (%s, %s, '\"x\"', now(), NULL, 'EdDSA', 'Ed25519')",
        (kid or f"k{seed}", jwk(seed)),
    )


def setup_example(name: str) -> None:
    """Better Auth's tables, sql/example_app.sql, then sql/example_citus.sql, as the README says;
    keys k1 and k2; users alice and bob, with tasks."""
    with connect(name) as c:
        c.execute("SET client_min_messages = warning")
        c.execute(sql_file("better_auth_schema.sql"))
        for seed in (1, 2):
            insert_key(c, seed)
        c.execute(sql_file("example_app.sql"))
    # As the README runs it: psql, each statement in its own transaction (each worker watches the
    # key table's placement once create_reference_table has committed).
    psql(name, "-f", os.path.join(ROOT, "sql", "example_citus.sql"))
    with connect(name) as c:
        for sub, uid in (("alice", ALICE), ("bob", BOB)):
            c.execute(
                """INSERT INTO "user" (id, name, email, "emailVerified", uuid) VALUES (%s, %s, %s, true, %s)""",
                (sub, sub, f"{sub}@example.com", uid),
            )
            c.execute(
                "INSERT INTO tasks (user_id, title) SELECT %s, %s || ' ' || g FROM generate_series(1, 5) g",
                (uid, sub),
            )


@pytest.fixture(scope="module")
def app():
    """The example app on the cluster, shared by a module's tests (which leave it as they found it)."""
    name = create_cluster_db()
    setup_example(name)
    yield name
    drop_cluster_db(name)


@pytest.fixture
def fresh():
    """A fresh cluster database with nothing else in it, for one test."""
    name = create_cluster_db()
    yield name
    drop_cluster_db(name)


def as_user(db: str, tok: str | None, how: str = "set_config", autocommit: bool = False, **kw) -> psycopg.Connection:
    """A connection as authenticator in an open transaction that switched to authenticated and
    carries `tok` the way `how` says: set_config (set_config(..., true)), set_local (SET LOCAL),
    headers (PostgREST's request.headers and auth_jwt.pre_request())."""
    c = connect(db, user="authenticator", autocommit=autocommit, **kw)
    begin(c, tok, how)
    return c


def begin(c: psycopg.Connection, tok: str | None, how: str = "set_config") -> None:
    if c.autocommit:
        c.execute("BEGIN")
    c.execute("SET LOCAL ROLE authenticated")
    if tok is None:
        return
    if how == "set_config":
        c.execute("SELECT set_config('auth_jwt.token', %s, true)", (f"Bearer {tok}",))
    elif how == "set_local":
        c.execute(sql.SQL("SET LOCAL auth_jwt.token = {}").format(sql.Literal(tok)))
    elif how == "headers":
        headers = '{"authorization": "Bearer %s", "accept": "*/*"}' % tok
        c.execute("SELECT set_config('request.headers', %s, true)", (headers,))
        c.execute("SELECT auth_jwt.pre_request()")
    else:
        raise ValueError(how)
