"""The FastAPI example against the real cluster (PGHOST/PGPORT from scripts/test), with users
and tokens from the real Better Auth (tests/interop/issue-tokens.mjs)."""

import json
import os
import subprocess
import uuid

import psycopg
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
ISSUE_TOKENS = os.path.join(ROOT, "tests", "interop", "issue-tokens.mjs")


def admin(dbname="postgres"):
    return psycopg.connect(f"host={os.environ['PGHOST']} port={os.environ['PGPORT']} user=postgres dbname={dbname}", autocommit=True)


def issue(dbname: str, count: int, expiration: str = "15m") -> list[dict]:
    out = subprocess.run(["node", ISSUE_TOKENS, dbname, str(count), expiration], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def world():
    """A database with 50 Better Auth users (15-minute tokens) and the app configured for it."""
    name = "fastapi_" + uuid.uuid4().hex[:8]
    users = issue(name, 50)
    os.environ["DATABASE_URL"] = f"postgresql://authenticator@/{name}?host={os.environ['PGHOST']}&port={os.environ['PGPORT']}"
    os.environ["FRONTEND_ORIGIN"] = "http://localhost:5173"
    os.environ["DB_POOL_MAX"] = "10"
    yield {"db": name, "users": users}
    with admin() as c:
        c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def anyio_backend():
    return "asyncio"
