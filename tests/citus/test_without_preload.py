"""The coordinator without auth_jwt in shared_preload_libraries (Citus only): SET LOCAL reaches the
workers with citus.propagate_set_commands = 'local', PostgREST's request.headers through
auth_jwt.pre_request() (which loads auth_jwt); a set_config token in a backend where nothing has
loaded auth_jwt yet does not reach them, and the request is anonymous there, never someone else."""

import os
import subprocess

import pytest
from psycopg import sql

from conftest import ALICE, BOB, alice, as_user, begin, connect
from test_citus import seen


def restart_coordinator() -> None:
    pg_ctl, data = os.path.join(os.environ["PGBIN"], "pg_ctl"), os.environ["CITUS_DATA"]
    subprocess.run(
        ["runuser", "-u", "postgres", "--", pg_ctl, "-D", data, "-l", os.path.join(data, "log"), "-w", "-m", "fast", "restart"],
        check=True,
        capture_output=True,
    )


@pytest.fixture(scope="module", autouse=True)
def citus_only():
    with connect("postgres") as c:
        c.execute("ALTER SYSTEM SET shared_preload_libraries = 'citus'")
    restart_coordinator()
    yield
    with connect("postgres") as c:
        c.execute("ALTER SYSTEM RESET shared_preload_libraries")
    restart_coordinator()


def test_set_local_with_citus_propagating_it(app):
    with connect(app) as su:
        assert su.execute("SHOW shared_preload_libraries").fetchone()[0] == "citus"
    c = connect(app, user="authenticator", autocommit=False)
    for where in (("user_id = %s", ALICE), ("true",)):
        c.execute("SET LOCAL ROLE authenticated")
        c.execute("SET LOCAL citus.propagate_set_commands = 'local'")
        c.execute(sql.SQL("SET LOCAL auth_jwt.token = {}").format(sql.Literal(alice())))
        assert seen(c, *where) == {ALICE: 5}, where
        c.rollback()


def test_request_headers_through_pre_request(app):
    c = as_user(app, alice(), "headers")
    assert seen(c, "user_id = %s", ALICE) == {ALICE: 5}
    assert seen(c) == {ALICE: 5}
    c.rollback()


def test_set_config_before_anything_loaded_auth_jwt(app):
    """README: preload auth_jwt on the coordinator for set_config. Without it, a router query in a
    backend that has not loaded auth_jwt carries no token: the worker sees an anonymous request."""
    c = connect(app, user="authenticator", autocommit=False)
    begin(c, alice(), "set_config")
    assert seen(c, "user_id = %s", ALICE) == {}
    assert seen(c, "user_id = %s", BOB) == {}
    c.rollback()
