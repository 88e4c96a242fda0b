"""A worker whose server lacks auth_jwt's library (installed on the coordinator and the other
worker only): a query whose shards live there fails with an error that names auth_jwt; nothing
answers without verifying the token."""

import os
import shutil
import subprocess

import pytest

from conftest import ALICE, BOB, WORKERS, alice, as_user, connect, error_of
from test_citus import seen

WORKER = WORKERS[-1]
DATA = os.environ["CITUS_LAST_WORKER_DATA"]


def restart_worker() -> None:
    pg_ctl = os.path.join(os.environ["PGBIN"], "pg_ctl")
    subprocess.run(
        ["runuser", "-u", "postgres", "--", pg_ctl, "-D", DATA, "-l", os.path.join(DATA, "log"), "-w", "-m", "fast", "restart"],
        check=True,
        capture_output=True,
    )


@pytest.fixture(scope="module")
def library_gone():
    """The worker restarted without auth_jwt preloaded, and the library file moved away; the other
    nodes preloaded it at their start, so they keep it. Put back afterwards."""
    libdir = subprocess.run(
        [os.path.join(os.environ["PGBIN"], "pg_config"), "--pkglibdir"], check=True, capture_output=True, text=True
    ).stdout.strip()
    library = os.path.join(libdir, "auth_jwt.so")
    with connect("postgres", WORKER) as c:
        c.execute("ALTER SYSTEM SET shared_preload_libraries = 'citus'")
    shutil.move(library, library + ".away")
    try:
        restart_worker()
        yield
    finally:
        shutil.move(library + ".away", library)
        with connect("postgres", WORKER) as c:
            c.execute("ALTER SYSTEM RESET shared_preload_libraries")
        restart_worker()


def test_a_worker_without_the_library_fails_the_query(app, library_gone):
    assert os.path.isdir(DATA), DATA
    with connect(app) as su:
        here = {
            port
            for (port,) in su.execute(
                "SELECT DISTINCT nodeport FROM citus_shards WHERE table_name = 'tasks'::regclass"
            ).fetchall()
        }
        assert WORKER in here, "some of tasks' shards live on that worker"
    for tok in (alice(), None):
        c = as_user(app, tok)
        e = error_of(c, "SELECT user_id::text, count(*) FROM tasks GROUP BY 1")
        assert "auth_jwt" in str(e), e
        c.close()
    # The shards elsewhere still answer, verified.
    with connect(app) as su:
        ports = dict(
            su.execute(
                """SELECT u, nodeport FROM unnest(%s::uuid[]) u, citus_shards
                    WHERE table_name = 'tasks'::regclass AND shardid = get_shard_id_for_distribution_column('tasks', u)""",
                ([ALICE, BOB],),
            ).fetchall()
        )
    for user, port in ports.items():
        c = as_user(app, alice())
        if port == WORKER:
            assert "auth_jwt" in str(error_of(c, "SELECT count(*) FROM tasks WHERE user_id = %s", str(user)))
        else:
            expected = {ALICE: 5} if str(user) == ALICE else {}
            assert seen(c, "user_id = %s", str(user)) == expected
        c.close()
