"""auth_jwt on a real Citus cluster (issue 29): installation whatever the key table's shape, the
request's token on every shard however the client sets it, keys and sessions fresh on every
node, isolation through router, multi-shard and INSERT ... SELECT queries, and a shard move."""

import psycopg
import pytest
from psycopg import sql

from conftest import (
    ALICE,
    BOB,
    COORDINATOR,
    HOST,
    NODES,
    NOT_FOUND,
    WORKERS,
    alice,
    as_user,
    begin,
    bob,
    connect,
    error_of,
    insert_key,
    jwk,
    one,
    sql_file,
    token,
)

HOWS = ["set_config", "set_local", "headers"]


def seen(c: psycopg.Connection, where: str = "true", *params) -> dict:
    """Whose rows the connection sees, and how many of each (a multi-shard query unless `where`
    pins user_id)."""
    rows = c.execute(f"SELECT user_id::text, count(*) FROM tasks WHERE {where} GROUP BY 1", params or None).fetchall()
    return dict(rows)


def watched_placements(db: str, port: int, table: str = "jwks", function: str = "auth_jwt.on_key_change()") -> int:
    """How many placements of `table` on that node carry auth_jwt's trigger calling `function`
    (the key-change trigger, or the session-change one), ENABLE ALWAYS."""
    with connect(db, port) as c:
        c.execute("SET citus.override_table_visibility = off")
        return one(
            c,
            """SELECT count(*) FROM pg_trigger t JOIN pg_class r ON r.oid = t.tgrelid
                WHERE r.relname ~ ('^' || %s || '_[0-9]+$') AND t.tgenabled = 'A'
                  AND t.tgfoid = %s::regprocedure""",
            table,
            function,
        )


# --- installation, whatever the key table's shape -------------------------------------------


def test_create_extension_when_the_key_table_is_already_a_reference_table(fresh):
    """0.3.0: "triggers are not supported on reference tables", unless citus.enable_unsafe_triggers;
    and with it, each worker's trigger sat on its empty shell table, never fired, and the
    coordinator's watch_key_table() failed with "trigger ... already exists"."""
    with connect(fresh) as c:
        c.execute(sql_file("better_auth_schema.sql"))
        c.execute("SELECT create_reference_table('public.jwks')")
        insert_key(c, 1)
        assert one(c, "SHOW citus.enable_unsafe_triggers") == "off"
        c.execute("CREATE EXTENSION auth_jwt")
        for port in NODES:
            assert watched_placements(fresh, port) == 1, f"node {port} watches its placement of jwks"
        rows = c.execute("SELECT relation, action FROM auth_jwt.watch_key_table()").fetchall()
    assert len(rows) == len(NODES), rows
    assert all(action == "already watched" for _, action in rows), rows
    assert sum(f"on worker {HOST}:{p}" in r for r, _ in rows for p in WORKERS) == len(WORKERS), rows


def test_a_key_table_created_after_the_extension(fresh):
    with connect(fresh) as c:
        c.execute("SET client_min_messages = warning")
        c.execute("CREATE EXTENSION auth_jwt")
        c.execute(sql_file("better_auth_schema.sql"))
        c.execute("SELECT create_reference_table('public.jwks')")
        insert_key(c, 1)
        actions = [a for _, a in c.execute("SELECT * FROM auth_jwt.watch_key_table()").fetchall()]
    assert actions == ["trigger created"] * len(NODES), actions
    for port in NODES:
        assert watched_placements(fresh, port) == 1


def test_alter_extension_update_watches_every_placement(fresh):
    """Citus runs ALTER EXTENSION ... UPDATE on every worker; the update to 0.4.0 puts the trigger
    on each node's placement (0.3.0 left none there)."""
    with connect(fresh) as c:
        c.execute(sql_file("better_auth_schema.sql"))
        c.execute("SELECT create_reference_table('public.jwks')")
        c.execute("SET client_min_messages = warning")
        c.execute("CREATE EXTENSION auth_jwt VERSION '0.3.0'")
    for port in NODES:  # the state 0.3.0 left: no trigger on any placement
        with connect(fresh, port) as c:
            c.execute("SET citus.override_table_visibility = off")
            for (rel,) in c.execute("SELECT tgrelid::regclass::text FROM pg_trigger WHERE tgname ~ '^auth_jwt_key_change'").fetchall():
                if rel.startswith("jwks_"):
                    c.execute(f"DROP TRIGGER auth_jwt_key_change ON {rel}")
        assert watched_placements(fresh, port) == 0
    with connect(fresh) as c:
        c.execute("SET client_min_messages = warning")
        c.execute("ALTER EXTENSION auth_jwt UPDATE")
    for port in NODES:
        assert watched_placements(fresh, port) == 1, port


def test_a_local_key_table_on_the_coordinator(fresh):
    """Installs everywhere; the coordinator says the workers cannot read it, and a worker fails a
    query with an error that says what to do: never an unverified answer."""
    with connect(fresh) as c:
        c.execute(sql_file("better_auth_schema.sql"))
        insert_key(c, 1)
        c.execute("SET client_min_messages = warning")
        c.execute(sql_file("example_app.sql"))
        c.execute("SELECT create_reference_table('public.user')")
        c.execute("ALTER TABLE public.tasks DROP CONSTRAINT tasks_pkey")
        c.execute("ALTER TABLE public.tasks ADD PRIMARY KEY (user_id, id)")
        c.execute("SELECT create_distributed_table('public.tasks', 'user_id')")
        c.execute("ALTER ROLE authenticated LOGIN")
        c.execute("SET client_min_messages = notice")
        notices = []
        c.add_notice_handler(lambda d: notices.append(d.message_primary))
        c.execute("SELECT * FROM auth_jwt.watch_key_table()")
    assert any("local table of the Citus coordinator" in n for n in notices), notices
    u = as_user(fresh, alice())
    e = error_of(u, "SELECT count(*) FROM tasks")
    assert e.sqlstate == "42P01" and "key table" in e.diag.message_primary, e
    assert "create_reference_table" in (e.diag.message_hint or ""), e.diag.message_hint


def test_the_example_watches_every_nodes_copy_of_the_keys(app):
    for port in NODES:
        assert watched_placements(app, port) == 1, port
        assert watched_placements(app, port, "session", "auth_jwt.on_session_change()") == 1, port


# --- isolation ---------------------------------------------------------------------------------


@pytest.mark.parametrize("how", HOWS)
def test_each_user_sees_only_their_rows(app, how):
    """Router queries (one shard) and multi-shard queries, the token set each way a client sets it.
    0.3.0: set_config and request.headers never reached the shards (nothing seen), and SET LOCAL
    failed on the workers ("cannot execute a distributed query from a query on a shard")."""
    c = as_user(app, alice(), how)
    assert seen(c, "user_id = %s", ALICE) == {ALICE: 5}, "router query, the user's shard"
    assert seen(c, "user_id = %s", BOB) == {}, "router query, someone else's shard"
    assert seen(c) == {ALICE: 5}, "multi-shard query"
    c.rollback()
    begin(c, bob(), how)
    assert seen(c) == {BOB: 5}
    c.rollback()
    begin(c, None)
    assert seen(c) == {}, "no token: nothing"
    c.rollback()


def test_writes_stay_within_the_users_rows(app):
    c = as_user(app, alice())
    assert c.execute("INSERT INTO tasks (user_id, title) SELECT user_id, title || ' copy' FROM tasks").rowcount == 5
    assert seen(c) == {ALICE: 10}
    e = error_of(c, "INSERT INTO tasks (user_id, title) VALUES (%s, 'not mine')", BOB)
    assert e.sqlstate == "42501", e
    begin(c, alice())
    assert c.execute("UPDATE tasks SET completed = true").rowcount == 5
    assert c.execute("UPDATE tasks SET completed = true WHERE user_id = %s", (BOB,)).rowcount == 0
    assert c.execute("DELETE FROM tasks WHERE user_id = %s", (BOB,)).rowcount == 0
    assert c.execute("DELETE FROM tasks WHERE title LIKE 'alice%%'").rowcount == 5
    c.rollback()
    with connect(app) as su:
        assert dict(su.execute("SELECT user_id::text, count(*) FROM tasks WHERE NOT completed GROUP BY 1")) == {
            ALICE: 5,
            BOB: 5,
        }


# --- the request's token -----------------------------------------------------------------------


def test_a_token_changed_within_the_transaction_reaches_the_workers(app):
    c = as_user(app, alice())
    assert seen(c) == {ALICE: 5}
    c.execute("SELECT set_config('auth_jwt.token', %s, true)", (bob(),))
    assert seen(c) == {BOB: 5}
    c.execute("SAVEPOINT s")
    c.execute("SELECT set_config('auth_jwt.token', %s, true)", (alice(),))
    assert seen(c) == {ALICE: 5}
    c.execute("ROLLBACK TO SAVEPOINT s")
    assert seen(c) == {BOB: 5}, "the token in force again after the rollback"
    c.execute("SAVEPOINT t")
    c.execute("SELECT set_config('auth_jwt.token', %s, true)", (alice(),))
    c.execute("RELEASE SAVEPOINT t")
    assert seen(c) == {ALICE: 5}, "a released savepoint keeps its token (Citus forgets it)"
    c.execute("SELECT set_config('auth_jwt.token', '', true)")
    assert seen(c) == {}, "a dropped token is dropped on the workers too"
    c.rollback()


def test_a_session_token_is_refused_on_every_node(app):
    c = connect(app, user="authenticator")
    c.execute(sql.SQL("SET auth_jwt.token = {}").format(sql.Literal(alice())))
    c.execute("BEGIN")
    c.execute("SET LOCAL ROLE authenticated")
    c.execute("SET LOCAL citus.log_remote_commands = on")
    sent = []
    c.add_notice_handler(lambda d: sent.append(d.message_primary))
    # A router query runs the policy on the worker only: there the request is anonymous.
    assert seen(c, "user_id = %s", ALICE) == {}
    # A multi-shard query: the coordinator's planner evaluates the policy's call, and refuses.
    e = error_of(c, "SELECT count(*) FROM tasks")
    assert e.sqlstate == "28000" and "set for the session" in e.diag.message_primary, e
    assert sent and not [s for s in sent if "auth_jwt.token" in s], "never carried to a worker"
    c.close()
    # A role default reaches the workers through Citus (ALTER ROLE ... SET propagates): refused there.
    with connect(app) as su:
        su.execute(sql.SQL("ALTER ROLE authenticated SET auth_jwt.token = {}").format(sql.Literal(alice())))
    try:
        c = as_user(app, None)
        e = error_of(c, "SELECT count(*) FROM tasks")
        assert e.sqlstate == "28000" and "set for the session" in e.diag.message_primary, e
    finally:
        with connect(app) as su:
            su.execute("ALTER ROLE authenticated RESET auth_jwt.token")


def test_a_forged_token_fails_the_query_on_the_workers(app):
    tok = alice()
    forged = tok[:-4] + ("AAAA" if not tok.endswith("AAAA") else "BBBB")
    c = as_user(app, forged)
    e = error_of(c, "SELECT count(*) FROM tasks")
    assert e.sqlstate == "28000", e


CHANGED = "token changed within a statement"


def test_a_token_set_by_a_function_clause_is_refused(app):
    """A function's SET clause gives the token to the call only. Carried to the workers, it would
    stay there for the rest of the statement and the transaction: an anonymous caller read bob's
    rows through a function that merely ran with bob's token (a review's reproduction). A function's
    statements fail; a procedure's, which sit at statement boundaries, are refused there."""
    with connect(app) as su:
        su.execute(
            sql.SQL(
                """CREATE FUNCTION as_bob() RETURNS int LANGUAGE sql SECURITY DEFINER
                   SET auth_jwt.token = {tok} AS 'SELECT 1';
                   CREATE PROCEDURE count_as_bob() LANGUAGE sql SET auth_jwt.token = {tok}
                   AS 'SELECT count(*) FROM tasks';
                   CREATE FUNCTION as_nobody() RETURNS bigint LANGUAGE sql
                   SET auth_jwt.token = '' AS 'SELECT count(*) FROM tasks';
                   GRANT EXECUTE ON FUNCTION as_bob(), as_nobody() TO authenticated;
                   GRANT EXECUTE ON PROCEDURE count_as_bob() TO authenticated"""
            ).format(tok=sql.Literal(bob()))
        )
    try:
        for tok in (None, alice()):
            c = as_user(app, tok)
            e = error_of(c, "WITH f AS MATERIALIZED (SELECT as_bob()) SELECT t.user_id::text, count(*) FROM tasks t, f GROUP BY 1")
            assert e.sqlstate == "28000" and CHANGED in e.diag.message_primary, e
            begin(c, tok)
            e = error_of(c, "CALL count_as_bob()")
            assert e.sqlstate == "28000" and CHANGED in e.diag.message_primary, e
            begin(c, tok)
            if tok:  # dropping the token within the statement is a change too
                e = error_of(c, "SELECT as_nobody()")
                assert e.sqlstate == "28000" and CHANGED in e.diag.message_primary, e
                begin(c, tok)
            assert seen(c) == ({ALICE: 5} if tok else {}), "the caller's own token, and nobody else's"
            c.rollback()
    finally:
        with connect(app) as su:
            su.execute("DROP FUNCTION as_bob(), as_nobody(); DROP PROCEDURE count_as_bob()")


FUNCTIONS_THAT_PEEK_AS_BOB = """
-- Each takes bob's token, runs a distributed query with it, then drops it again, each in its own
-- way, before returning.
CREATE FUNCTION peek_perform() RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER AS $$
  DECLARE n bigint;
  BEGIN
    PERFORM set_config('auth_jwt.token', {bob}, true);
    SELECT count(*) INTO n FROM tasks;
    PERFORM set_config('auth_jwt.token', '', true);
    RETURN n;
  END $$;
CREATE FUNCTION peek_assign() RETURNS int LANGUAGE plpgsql STABLE SECURITY DEFINER AS $$
  DECLARE n bigint; x text;
  BEGIN
    x := set_config('auth_jwt.token', {bob}, true);
    SELECT count(*) INTO n FROM tasks;
    x := set_config('auth_jwt.token', '', true);  -- no statement of its own
    RETURN 100;
  END $$;
CREATE FUNCTION peek_set_local() RETURNS int LANGUAGE plpgsql SECURITY DEFINER AS $$
  DECLARE n bigint;
  BEGIN
    PERFORM set_config('auth_jwt.token', {bob}, true);
    SELECT count(*) INTO n FROM tasks;
    SET LOCAL auth_jwt.token = '';  -- a utility statement
    RETURN 100;
  END $$;
-- Its SET clause drops the caller's token for the call; bob's comes from request.headers, set in
-- the body; when the call ends, the caller's token is back, and takes precedence over the headers.
CREATE FUNCTION peek_headers() RETURNS int LANGUAGE plpgsql STABLE SET auth_jwt.token = '' AS $$
  DECLARE n bigint;
  BEGIN
    PERFORM set_config('request.headers', {headers}, true);
    SELECT count(*) INTO n FROM tasks;
    RETURN 100;
  END $$;
-- Takes bob's token and drops it with no statement in between: nothing runs with it. (VOLATILE,
-- so that the planner does not run it to estimate a LIMIT: then it would have dropped the token
-- before the statement began.)
CREATE FUNCTION take_and_drop() RETURNS int LANGUAGE plpgsql VOLATILE SECURITY DEFINER AS $$
  DECLARE x text;
  BEGIN
    x := set_config('auth_jwt.token', {bob}, true);
    x := set_config('auth_jwt.token', '', true);
    RETURN 100;
  END $$;
GRANT EXECUTE ON FUNCTION peek_perform(), peek_assign(), peek_set_local(), peek_headers(), take_and_drop()
  TO authenticated;
"""

# Where Citus runs the function on the coordinator, between the statement's start and its work on
# the workers (each of these returned or changed bob's rows for alice or an anonymous caller in a
# review of an earlier version, which carried the token at every executor start, run and end).
PEEKS = [
    "WITH f AS MATERIALIZED (SELECT peek_perform() AS n) SELECT t.user_id::text, count(*) FROM tasks t, f GROUP BY 1",
    "UPDATE tasks SET title = title || peek_assign() WHERE user_id = %(bob)s RETURNING id",
    "DELETE FROM tasks WHERE user_id = %(bob)s AND peek_assign() IS NOT NULL RETURNING id",
    "INSERT INTO tasks (user_id, title) VALUES (%(bob)s, peek_set_local()::text) RETURNING id",
    "SELECT user_id::text FROM tasks LIMIT peek_assign()",
    "SELECT user_id::text FROM tasks ORDER BY title OFFSET peek_assign() - 100",
    "SELECT user_id::text, count(*) OVER (ORDER BY title ROWS BETWEEN peek_assign() PRECEDING AND CURRENT ROW) FROM tasks",
    "SELECT user_id::text FROM (SELECT user_id FROM tasks LIMIT peek_set_local()) s",
    "SELECT user_id::text FROM (SELECT user_id FROM tasks LIMIT peek_headers()) s",
    # PL/pgSQL evaluates an assignment's expression without the executor (a fourth review).
    "DO $$ DECLARE n int; BEGIN n := peek_assign(); END $$",
]


@pytest.fixture
def peeks(app):
    b = bob()
    with connect(app) as su:
        su.execute(
            sql.SQL(FUNCTIONS_THAT_PEEK_AS_BOB).format(
                bob=sql.Literal(b), headers=sql.Literal('{"authorization": "Bearer %s"}' % b)
            )
        )
    yield
    with connect(app) as su:
        su.execute("DROP FUNCTION peek_perform(), peek_assign(), peek_set_local(), peek_headers(), take_and_drop()")
        assert one(su, "SELECT count(*) FROM tasks WHERE user_id = %s AND title LIKE 'bob _'", BOB) == 5


@pytest.mark.parametrize("statement", PEEKS)
def test_a_function_that_changes_the_token_and_runs_a_statement_fails(app, peeks, statement):
    """Within a statement the workers keep the token the statement began with, and a function's
    statement that finds it changed fails: no work on the workers with a token only a function
    held, and none with the caller's where the function meant another."""
    for caller in (None, alice()):
        c = as_user(app, caller)
        with pytest.raises(psycopg.Error) as raised:
            c.execute(statement, {"bob": BOB} if "%(bob)s" in statement else None)
        c.rollback()
        e = raised.value
        # (A STABLE function in LIMIT may also run while the statement is planned, before it
        # begins: then a SET clause's token is refused as such. Citus may give up planning an
        # UPDATE whose STABLE call failed so, and refuse it on its own: 0A000.)
        if e.sqlstate == "0A000":
            assert statement.startswith("UPDATE") and "STABLE functions" in e.diag.message_primary, (statement, e)
        else:
            assert e.sqlstate == "28000", (statement, e)
            assert CHANGED in e.diag.message_primary or "SET clause" in e.diag.message_primary, (statement, e)
        begin(c, caller)
        assert seen(c) == ({ALICE: 5} if caller else {}), "the caller's own rows after"
        c.rollback()


ROUND_THREE = """
-- The function's own SET LOCAL, which Citus sends on to the workers at once when the caller has
-- set citus.propagate_set_commands = 'local' (any role may); its SET clause gives it back.
CREATE FUNCTION set_local_scoped() RETURNS int LANGUAGE plpgsql VOLATILE SECURITY DEFINER
  SET auth_jwt.token FROM CURRENT AS $$ BEGIN SET LOCAL auth_jwt.token = {bob}; RETURN 100; END $$;
-- Swaps bob's headers in and the caller's back; STABLE, so the planner may run it for a LIMIT.
CREATE FUNCTION swap_headers() RETURNS int LANGUAGE plpgsql STABLE SECURITY DEFINER AS $$
  DECLARE old text := current_setting('request.headers', true); n bigint;
  BEGIN
    PERFORM set_config('request.headers', {headers}, true);
    SELECT count(*) INTO n FROM tasks;
    PERFORM set_config('request.headers', old, true);
    RETURN 100;
  END $$;
-- A procedure's statements are the procedure's, as a function's are.
CREATE PROCEDURE touch_as_bob() LANGUAGE plpgsql SECURITY DEFINER AS $$
  DECLARE n bigint;
  BEGIN
    PERFORM set_config('auth_jwt.token', {bob}, true);
    SELECT count(*) INTO n FROM tasks WHERE user_id = '00000000-0000-4000-8000-000000000b0b';
    PERFORM set_config('auth_jwt.token', '', true);
  END $$;
GRANT EXECUTE ON FUNCTION set_local_scoped(), swap_headers() TO authenticated;
GRANT EXECUTE ON PROCEDURE touch_as_bob() TO authenticated;
"""


@pytest.fixture
def round_three(app):
    b = bob()
    with connect(app) as su:
        su.execute(
            sql.SQL(ROUND_THREE).format(bob=sql.Literal(b), headers=sql.Literal('{"authorization": "Bearer %s"}' % b))
        )
    yield
    with connect(app) as su:
        su.execute("DROP FUNCTION set_local_scoped(), swap_headers(); DROP PROCEDURE touch_as_bob()")
        assert one(su, "SELECT count(*) FROM tasks WHERE user_id = %s AND title LIKE 'bob _'", BOB) == 5


@pytest.mark.parametrize(
    "statement",
    [
        "WITH f AS MATERIALIZED (SELECT set_local_scoped() n) UPDATE tasks t SET title = 'x' FROM f WHERE f.n = 100 RETURNING t.user_id",
        "SELECT user_id::text FROM tasks LIMIT set_local_scoped()",
        "SELECT user_id::text FROM tasks LIMIT swap_headers()",
        "UPDATE tasks SET title = 'x' WHERE id IN (SELECT id FROM tasks LIMIT swap_headers()) RETURNING user_id",
        "CALL touch_as_bob()",
    ],
)
def test_no_route_changes_the_token_within_a_statement(app, round_three, statement):
    """A third review's forms: a function's SET LOCAL that Citus propagates at once; headers swapped
    by a function the planner runs, which the carry then kept as the coordinator's own token for
    the rest of the transaction; a procedure that takes a token and clears it."""
    for how, tok in (("set_config", alice()), ("headers", None)):
        c = as_user(app, tok, how)
        if tok is None:  # PostgREST's headers with no authorization: an anonymous request
            c.execute("""SELECT set_config('request.headers', '{"accept": "*/*"}', true)""")
        c.execute("SET LOCAL citus.propagate_set_commands = 'local'")
        if tok and "swap_headers" in statement:
            # auth_jwt.token comes before the headers: the swap changes nothing, alice stays alice.
            users = {str(r[0]) for r in c.execute(statement).fetchall()}
            assert users == {ALICE}, (statement, users)
            c.rollback()
        else:
            e = error_of(c, statement)
            assert e.sqlstate == "28000" and CHANGED in e.diag.message_primary, (statement, e)
        begin(c, tok, how)
        assert seen(c) == ({ALICE: 5} if tok else {}), "the caller's own rows after"
        c.rollback()


def test_a_token_from_the_headers_goes_when_the_headers_go(app):
    """Carrying a token read from request.headers no longer sets auth_jwt.token on the coordinator:
    when the headers change, the next statement carries what they hold now."""
    c = as_user(app, alice(), "headers")
    assert seen(c) == {ALICE: 5}
    c.execute("""SELECT set_config('request.headers', '{"accept": "*/*"}', true)""")
    assert seen(c) == {}, "anonymous again"
    assert one(c, "SELECT auth_jwt.jwt_claim_uuid()") is None
    c.rollback()


def test_the_remote_command_log_stays_off_once_a_token_was_carried(app, round_three):
    """Citus begins each worker connection it opens later in the transaction with the
    transaction's SET LOCALs, tokens included, and shows them to the client when
    citus.log_remote_commands is on: after a carry it cannot be turned on, however it is set."""
    c = as_user(app, alice())
    assert seen(c, "user_id = %s", ALICE) == {ALICE: 5}  # one worker so far
    for turn_on in (
        "SET LOCAL citus.log_remote_commands = on",
        "SELECT set_config('citus.log_remote_commands', 'on', true)",
        "WITH s AS MATERIALIZED (SELECT set_config('citus.log_remote_commands', 'on', true)) SELECT count(*) FROM tasks, s",
    ):
        e = error_of(c, turn_on)
        assert e.sqlstate == "22023" and "auth_jwt" in (e.diag.message_detail or ""), (turn_on, e)
        begin(c, alice())
        assert seen(c, "user_id = %s", ALICE) == {ALICE: 5}
    c.rollback()


def test_a_deferred_trigger_that_changes_the_token_fails_the_commit(app, peeks):
    """Deferred triggers fire at COMMIT, outside any statement: a trigger's statements are nested
    all the same, and one that finds the token changed fails the commit."""
    with connect(app) as su:
        su.execute(
            """CREATE TABLE local_marks (k int);
               GRANT INSERT ON local_marks TO authenticated;
               CREATE FUNCTION mark_as_bob() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$
                 BEGIN
                   PERFORM set_config('auth_jwt.token', current_setting('app.bob'), true);
                   PERFORM count(*) FROM tasks;
                   PERFORM set_config('auth_jwt.token', '', true);
                   RETURN NULL;
                 END $$;
               CREATE CONSTRAINT TRIGGER as_bob AFTER INSERT ON local_marks
                 DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION mark_as_bob()"""
        )
    try:
        c = as_user(app, alice())
        c.execute("SELECT set_config('app.bob', %s, true)", (bob(),))  # what the trigger takes
        assert seen(c) == {ALICE: 5}
        c.execute("INSERT INTO local_marks VALUES (1)")
        with pytest.raises(psycopg.Error) as raised:
            c.commit()
        e = raised.value
        assert e.sqlstate == "28000" and CHANGED in e.diag.message_primary, e
    finally:
        with connect(app) as su:
            su.execute("DROP TABLE local_marks; DROP FUNCTION mark_as_bob()")


def test_the_remote_command_log_turned_on_by_reset_is_refused(app):
    """RESET goes back to the connection's own value without the check hook: the next statement
    boundary, nested or not, refuses before Citus opens a connection and replays the SET LOCALs."""
    c = connect(app, user="authenticator", autocommit=False, options="-c citus.log_remote_commands=on")
    sent = []
    c.add_notice_handler(lambda d: sent.append(d.message_primary))
    c.execute("SET LOCAL ROLE authenticated")
    c.execute("SET LOCAL citus.log_remote_commands = off")
    c.execute("SELECT set_config('auth_jwt.token', %s, true)", (alice(),))
    assert seen(c, "user_id = %s", ALICE) == {ALICE: 5}
    c.execute("RESET citus.log_remote_commands")
    e = error_of(c, "SELECT count(*) FROM tasks")
    assert e.sqlstate == "28000" and "log_remote_commands" in e.diag.message_primary, e
    # Inside a function, with the token assigned again (the same value: no change to refuse) and
    # more connections allowed, so that Citus opens new ones and begins each with the SET LOCALs.
    tok = alice()
    with connect(app) as su:
        su.execute(
            """CREATE FUNCTION reassign_and_count(tok text) RETURNS bigint LANGUAGE plpgsql AS $$
               DECLARE n bigint;
               BEGIN
                 PERFORM set_config('auth_jwt.token', tok, true);
                 RESET citus.log_remote_commands;
                 SET LOCAL citus.max_adaptive_executor_pool_size = 16;
                 SELECT count(*) INTO n FROM tasks;
                 RETURN n;
               END $$;
               GRANT EXECUTE ON FUNCTION reassign_and_count(text) TO authenticated"""
        )
    try:
        c.execute("SET LOCAL ROLE authenticated")
        c.execute("SET LOCAL citus.log_remote_commands = off")
        c.execute("SET LOCAL citus.max_adaptive_executor_pool_size = 1")
        c.execute("SELECT set_config('auth_jwt.token', %s, true)", (tok,))
        assert seen(c) == {ALICE: 5}
        e = error_of(c, "SELECT reassign_and_count(%s)", tok)
        assert e.sqlstate == "28000" and "log_remote_commands" in e.diag.message_primary, e
        assert not [m for m in sent if "auth_jwt.token" in m], sent
    finally:
        c.close()
        with connect(app) as su:
            su.execute("DROP FUNCTION reassign_and_count(text)")


def test_functions_run_while_a_statement_is_parsed_or_bound_are_nested(app, peeks):
    """A domain's CHECK runs while a statement is parsed (a literal) or its parameters bound,
    before any planning or execution: the functions it calls are someone's code all the same (a
    fifth review read bob's rows so, for the rest of the transaction)."""
    with connect(app) as su:
        su.execute(
            """CREATE FUNCTION check_as_bob(v text) RETURNS bool LANGUAGE plpgsql AS $$
                 DECLARE n bigint; BEGIN n := peek_perform(); RETURN true; END $$;
               CREATE FUNCTION check_as_bob_quietly(v text) RETURNS bool LANGUAGE plpgsql AS $$
                 DECLARE n bigint;
                 BEGIN
                   BEGIN n := peek_perform(); EXCEPTION WHEN others THEN NULL; END;
                   RETURN true;
                 END $$;
               CREATE DOMAIN bob_checked AS text CHECK (check_as_bob(VALUE));
               CREATE DOMAIN bob_checked_quietly AS text CHECK (check_as_bob_quietly(VALUE));
               GRANT EXECUTE ON FUNCTION check_as_bob(text), check_as_bob_quietly(text) TO authenticated"""
        )
    try:
        for caller in (None, alice()):
            mine = {ALICE: 5} if caller else {}
            c = as_user(app, caller)
            assert seen(c) == mine  # opens this role's worker connections
            e = error_of(c, "SELECT count(*) FROM tasks WHERE '{x}'::bob_checked[] IS NOT NULL")
            assert e.sqlstate == "28000" and CHANGED in e.diag.message_primary, e
            begin(c, caller)
            assert seen(c) == mine
            e = error_of(c, "SELECT count(*) FROM tasks WHERE %s::bob_checked IS NOT NULL", "x")
            assert e.sqlstate == "28000" and CHANGED in e.diag.message_primary, e
            begin(c, caller)
            assert seen(c) == mine
            assert seen(c, "'{x}'::bob_checked_quietly[] IS NOT NULL") == mine, "nothing carried, caught or not"
            assert seen(c) == mine
            c.rollback()
    finally:
        with connect(app) as su:
            su.execute(
                """DROP DOMAIN bob_checked, bob_checked_quietly;
                   DROP FUNCTION check_as_bob(text), check_as_bob_quietly(text)"""
            )


def test_a_token_carried_in_a_released_savepoint_is_dropped_when_the_request_drops_it(app):
    """Citus's workers keep a SET LOCAL made in a savepoint after RELEASE, while Citus itself
    forgets it: dropping the token after that drops it on the workers too."""
    c = as_user(app, None)
    c.execute("SAVEPOINT s")
    c.execute("SELECT set_config('auth_jwt.token', %s, true)", (bob(),))
    assert seen(c) == {BOB: 5}
    c.execute("SELECT set_config('auth_jwt.token', '', true)")
    c.execute("RELEASE SAVEPOINT s")
    assert one(c, "SELECT auth_jwt.jwt_claim_uuid()") is None
    assert seen(c) == {}, "anonymous again, on every shard"
    assert seen(c, "user_id = %s", BOB) == {}
    c.rollback()


def test_the_carry_prints_no_token_and_keeps_sql_functions_inlined(app):
    """The carrying SET LOCAL goes to ProcessUtility as a parse tree: debug_print_parse (any role
    may set it) printed it, token and all, to the client, which could so read a token only a
    SECURITY DEFINER function had set (a sixth review). And statements are told apart by their
    text, not by counting calls through fmgr's hook, which kept the planner from inlining every
    SQL function on a Citus node."""
    tok = alice()
    c = as_user(app, None)
    sent = []
    c.add_notice_handler(lambda d: sent.append(f"{d.message_primary} {d.message_detail} {d.context}"))
    c.execute("SET LOCAL client_min_messages = log")
    c.execute("SET LOCAL debug_print_parse = on")
    c.execute("SET LOCAL debug_print_rewritten = on")
    c.execute("SELECT set_config('auth_jwt.token', %s, true)", (tok,))
    assert seen(c) == {ALICE: 5}
    assert sent, "the parse trees were printed"
    assert not [m for m in sent if tok.rsplit(".", 1)[1][:20] in m.replace(" ", "").replace("\n", "")], sent
    c.rollback()
    with connect(app) as su:
        su.execute("CREATE FUNCTION add_one(i int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT i + 1'")
        try:
            plan = "\n".join(r[0] for r in su.execute("EXPLAIN (VERBOSE, COSTS OFF) SELECT add_one(g) FROM generate_series(1, 3) g"))
            assert "(g + 1)" in plan and "add_one" not in plan, plan
        finally:
            su.execute("DROP FUNCTION add_one(int)")


def test_a_deferred_foreign_key_checks_at_commit_after_the_token_changed(app):
    """A foreign key's deferred check runs SQL of its own at COMMIT: the client's last change of the
    token is carried before COMMIT, as before any statement, and the check is not refused."""
    with connect(app) as su:
        su.execute(
            """CREATE TABLE fk_parent (id int PRIMARY KEY);
               CREATE TABLE fk_child (pid int REFERENCES fk_parent DEFERRABLE INITIALLY DEFERRED);
               INSERT INTO fk_parent VALUES (1);
               GRANT SELECT ON fk_parent TO authenticated;
               GRANT INSERT ON fk_child TO authenticated"""
        )
    try:
        for change in ("SELECT set_config('auth_jwt.token', '', true)", "SET LOCAL auth_jwt.token = ''"):
            c = as_user(app, alice())
            assert seen(c) == {ALICE: 5}
            c.execute("INSERT INTO fk_child VALUES (1)")
            c.execute(change)
            c.commit()
        with connect(app) as su:
            assert one(su, "SELECT count(*) FROM fk_child") == 2
    finally:
        with connect(app) as su:
            su.execute("DROP TABLE fk_child, fk_parent")


def test_an_application_name_that_claims_to_be_citus_spares_no_check(app):
    """Any role may set application_name to what Citus's own connections use: it spared the
    backend every check, and a function's propagated SET LOCAL of bob's token (or headers) then
    stayed on the workers, or showed the client bob's token in the remote-command log (a seventh
    review). Now it spares the carrying only."""
    b = bob()
    escaped = b.replace(".", "\\x2e")  # a spelling the text hiding would not recognise
    with connect(app) as su:
        su.execute(
            sql.SQL(
                """CREATE FUNCTION tok_scoped() RETURNS int LANGUAGE plpgsql SECURITY DEFINER
                     SET auth_jwt.token = '' AS $f$
                     BEGIN EXECUTE 'SET LOCAL auth_jwt.token = E''' || {esc} || ''''; RETURN 100; END $f$;
                   CREATE FUNCTION hdr_scoped() RETURNS int LANGUAGE plpgsql SECURITY DEFINER
                     SET request.headers = '{{}}' AS $f$
                     BEGIN EXECUTE format('SET LOCAL request.headers = %L', {hdr}); RETURN 100; END $f$;
                   GRANT EXECUTE ON FUNCTION tok_scoped(), hdr_scoped() TO authenticated"""
            ).format(esc=sql.Literal(escaped), hdr=sql.Literal('{"authorization": "Bearer %s"}' % b))
        )
    try:
        for caller in (None, alice()):
            for fn in ("tok_scoped()", "hdr_scoped()"):
                c = as_user(app, caller)
                sent = []
                c.add_notice_handler(lambda d: sent.append(d.message_primary))
                assert seen(c) == ({ALICE: 5} if caller else {})
                c.execute("SELECT set_config('application_name', 'citus_run_command gpid=10000000001', false)")
                c.execute("SET LOCAL citus.propagate_set_commands = 'local'")
                if caller is None:
                    c.execute("SET LOCAL citus.log_remote_commands = on")
                e = error_of(c, f"SELECT {fn}")
                assert e.sqlstate == "28000" and CHANGED in e.diag.message_primary, (fn, e)
                assert not [m for m in sent if b.rsplit(".", 1)[1][:20] in m.replace("\\x2e", ".")], sent
                begin(c, caller)
                assert seen(c) == ({ALICE: 5} if caller else {}), "the caller's own rows after"
                c.close()
    finally:
        with connect(app) as su:
            su.execute("DROP FUNCTION tok_scoped(), hdr_scoped()")


def test_a_function_run_while_parsing_cannot_fetch_the_clients_cursor_as_another(app, peeks):
    """A domain's CHECK runs while a statement is parsed, before its boundary: a function there
    that took bob's token (a PL/pgSQL assignment, no statement of its own) and then fetched the
    client's cursor read bob's rows through it (an eighth review). A nested run is checked, and a
    change made before the boundary by anything but the client's previous statements is refused."""
    with connect(app) as su:
        su.execute(
            """CREATE FUNCTION fetch_as_bob(v text) RETURNS bool LANGUAGE plpgsql AS $$
                 DECLARE r refcursor := 'cur'; u text; seen text := ''; y int;
                 BEGIN
                   y := peek_assign();
                   LOOP FETCH r INTO u; EXIT WHEN NOT FOUND; seen := seen || u || ','; END LOOP;
                   RAISE NOTICE 'fetched: %', seen;
                   RETURN true;
                 END $$;
               CREATE DOMAIN fetched_as_bob AS text CHECK (fetch_as_bob(VALUE));
               CREATE FUNCTION reset_token() RETURNS int LANGUAGE plpgsql SECURITY DEFINER
                 SET auth_jwt.token FROM CURRENT AS $$ BEGIN RESET auth_jwt.token; RETURN 100; END $$;
               GRANT EXECUTE ON FUNCTION fetch_as_bob(text), reset_token() TO authenticated"""
        )
    try:
        for caller in (None, alice()):
            c = as_user(app, caller)
            sent = []
            c.add_notice_handler(lambda d: sent.append(d.message_primary))
            assert seen(c) == ({ALICE: 5} if caller else {})
            c.execute("DECLARE cur CURSOR FOR SELECT user_id::text FROM tasks")
            e = error_of(c, "SELECT '{x}'::fetched_as_bob[]")
            assert e.sqlstate == "28000" and CHANGED in e.diag.message_primary, e
            assert not [m for m in sent if BOB in m], sent
            c.close()
        # A RESET that Citus sends on, mid-statement, is a change too (it only took access away).
        c = as_user(app, alice())
        c.execute("SET LOCAL citus.propagate_set_commands = 'local'")
        e = error_of(c, "WITH f AS MATERIALIZED (SELECT reset_token() n) SELECT count(*) FROM tasks t, f")
        assert e.sqlstate == "28000" and CHANGED in e.diag.message_primary, e
        c.close()
    finally:
        with connect(app) as su:
            su.execute("DROP DOMAIN fetched_as_bob; DROP FUNCTION fetch_as_bob(text), reset_token()")


def test_a_query_string_that_sets_the_token_then_parses_a_checked_literal(app):
    """The statements of one query string share its text and start time; a domain CHECK that reads
    a table while the second is parsed follows a change the first made, the client's own."""
    with connect(app) as su:
        su.execute(
            """CREATE TABLE cats (id int PRIMARY KEY); INSERT INTO cats VALUES (5);
               GRANT SELECT ON cats TO authenticated;
               CREATE FUNCTION cat_exists(v int) RETURNS bool LANGUAGE plpgsql AS $$
                 BEGIN RETURN EXISTS (SELECT FROM cats WHERE id = v); END $$;
               CREATE DOMAIN known_cat AS int CHECK (cat_exists(VALUE))"""
        )
    try:
        c = connect(app, user="authenticator")
        tok = alice()
        c.execute(
            f"BEGIN; SET LOCAL ROLE authenticated; SELECT set_config('auth_jwt.token', '{tok}', true); "
            "SELECT '{5}'::known_cat[]; SELECT count(*) FROM tasks; COMMIT"
        )
        c.close()
    finally:
        with connect(app) as su:
            su.execute("DROP DOMAIN known_cat; DROP FUNCTION cat_exists(int); DROP TABLE cats")


def test_prepared_statements_and_generic_plans_carry_the_clients_token(app):
    """The extended protocol runs a portal under a copy of its text, and a generic plan is not
    planned again at Bind: every request after the plan cache chose one was refused (a ninth
    review; asyncpg, pgjdbc and PostgREST keep their statements prepared). And a COMMIT sent so,
    after a savepoint that carried the token was released, lost the transaction's write."""
    c = connect(app, user="authenticator", autocommit=False)
    for i in range(8):
        tok, mine = (alice(), ALICE) if i % 2 == 0 else (bob(), BOB)
        c.execute("SET LOCAL ROLE authenticated", prepare=True)
        c.execute("SET LOCAL plan_cache_mode = force_generic_plan", prepare=True)
        c.execute("SELECT set_config('auth_jwt.token', %s, true)", (tok,), prepare=True)
        other = BOB if mine == ALICE else ALICE
        for user, expected in ((mine, 5), (other, 0)):
            n = c.execute("SELECT count(*) FROM tasks WHERE user_id = %s", (user,), prepare=True).fetchone()[0]
            assert n == expected, (i, user, n)
        c.rollback()
    for step in (
        "SAVEPOINT s",
        ("SELECT set_config('auth_jwt.token', %s, true)", (alice(),)),
        "RELEASE SAVEPOINT s",
        "SAVEPOINT s",
        ("INSERT INTO tasks (user_id, title) VALUES (%s, 'saved')", (ALICE,)),
        "RELEASE SAVEPOINT s",
        "COMMIT",
    ):
        if step == "SAVEPOINT s" and not c.info.transaction_status:
            c.execute("SET LOCAL ROLE authenticated", prepare=True)
        query, params = step if isinstance(step, tuple) else (step, None)
        c.execute(query, params, prepare=True)
    with connect(app) as su:
        assert one(su, "SELECT count(*) FROM tasks WHERE title = 'saved'") == 1
        su.execute("DELETE FROM tasks WHERE title = 'saved'")
    c.close()


@pytest.mark.parametrize("how", ["rolled back", "failed, then rolled back"])
def test_a_pipeline_rolls_back_to_a_savepoint_then_runs_a_prepared_statement(app, how):
    """ROLLBACK TO SAVEPOINT restores the token the savepoint began with after the statement has
    returned, as its transaction command ends. In a pipeline the next statement, prepared with a
    generic plan, is started and run under copies of its text, where only what the client's
    previous statements changed is carried: the restore counted as a change no client statement
    made, and the request was refused (28000; the README listed it as a known false refusal)."""
    c = connect(app, user="authenticator", autocommit=False)
    c.execute("SET LOCAL ROLE authenticated")
    c.execute("SET LOCAL plan_cache_mode = force_generic_plan")
    c.execute("SELECT set_config('auth_jwt.token', %s, true)", (alice(),))
    query = "SELECT user_id::text, count(*) FROM tasks GROUP BY 1"
    assert dict(c.execute(query, prepare=True).fetchall()) == {ALICE: 5}, "planned once: generic from now on"
    c.execute("SAVEPOINT s")
    c.execute("SELECT set_config('auth_jwt.token', %s, true)", (bob(),))
    assert dict(c.execute(query, prepare=True).fetchall()) == {BOB: 5}, "bob's token carried in the savepoint"
    if how != "rolled back":
        with pytest.raises(psycopg.errors.DivisionByZero):
            c.execute("SELECT 1/0")
    with c.pipeline():
        c.execute("ROLLBACK TO SAVEPOINT s")
        cur = c.execute(query, prepare=True)
    assert dict(cur.fetchall()) == {ALICE: 5}, "alice's token in force again, on every node"
    c.execute("SELECT set_config('auth_jwt.token', %s, true)", (bob(),))
    with c.pipeline():
        cur = c.execute(query, prepare=True)
    assert dict(cur.fetchall()) == {BOB: 5}, "a token the client set after the rollback still carries"
    c.rollback()
    c.close()


def test_a_function_cannot_pass_its_own_change_off_as_the_clients(app):
    """A function run while a statement is parsed opened and closed a cursor with the client's own
    text (current_query()) between taking bob's token and reading: the cursor's end counted as the
    client's step having returned, and the change as the client's (a tenth review)."""
    with connect(app) as su:
        su.execute(
            sql.SQL(
                """CREATE FUNCTION sneak(v text) RETURNS bool LANGUAGE plpgsql AS $$
                     DECLARE q text := current_query(); cc refcursor; x text; seen text;
                     BEGIN
                       IF current_setting('app.sneaking', true) = 'on' THEN RETURN true; END IF;
                       PERFORM set_config('app.sneaking', 'on', true);
                       OPEN cc FOR EXECUTE q;
                       x := set_config('auth_jwt.token', {bob}, true);
                       CLOSE cc;
                       SELECT string_agg(user_id::text, ',') INTO seen FROM tasks;
                       RAISE NOTICE 'saw %', seen;
                       RETURN true;
                     END $$;
                   CREATE DOMAIN sneaky AS text CHECK (sneak(VALUE));
                   GRANT EXECUTE ON FUNCTION sneak(text) TO authenticated"""
            ).format(bob=sql.Literal(bob()))
        )
    try:
        c = as_user(app, alice())
        sent = []
        c.add_notice_handler(lambda d: sent.append(d.message_primary))
        assert seen(c) == {ALICE: 5}
        e = error_of(c, "SELECT '{close}'::sneaky[]")
        assert e.sqlstate == "28000" and CHANGED in e.diag.message_primary, e
        assert not [m for m in sent if BOB in m], sent
        c.close()
    finally:
        with connect(app) as su:
            su.execute("DROP DOMAIN sneaky; DROP FUNCTION sneak(text)")


def test_a_cursor_fetched_after_a_function_changed_the_token(app, peeks):
    """(The planner runs a STABLE function to estimate a LIMIT, so the DECLARE may be where it
    fails; a VOLATILE one runs at the FETCH.)"""
    for peek in ("peek_assign()", "peek_perform()"):
        c = as_user(app, alice())
        with pytest.raises(psycopg.Error) as raised:
            c.execute(f"DECLARE cur CURSOR FOR SELECT user_id::text FROM tasks LIMIT {peek}")
            c.execute("FETCH 2 FROM cur")
        e = raised.value
        assert e.sqlstate == "28000" and CHANGED in e.diag.message_primary, (peek, e)
        c.rollback()


def test_a_token_taken_and_dropped_with_no_statement_between_runs_nothing_with_it(app, peeks):
    """The statement's work on the workers runs with the caller's token, as it began; the
    coordinator has none after the call, and the next statement carries that."""
    c = as_user(app, alice())
    rows = c.execute("SELECT user_id::text FROM tasks LIMIT take_and_drop()").fetchall()
    assert rows == [(ALICE,)] * 5
    assert seen(c) == {}, "the function dropped the transaction's token: none from the next statement on"
    c.rollback()


def test_no_token_is_carried_while_citus_shows_remote_commands(app):
    """citus.log_remote_commands shows the client every command Citus sends, the carrying SET LOCAL
    included, and with it a token the client may never have seen (one a SECURITY DEFINER function
    set for the transaction; a review read it so)."""
    c = as_user(app, alice())
    c.execute("SET LOCAL citus.log_remote_commands = on")
    sent = []
    c.add_notice_handler(lambda d: sent.append(d.message_primary))
    e = error_of(c, "SELECT count(*) FROM tasks")
    assert e.sqlstate == "28000" and "log_remote_commands" in e.diag.message_primary, e
    assert not [m for m in sent if "auth_jwt.token" in m], sent
    begin(c, None)
    c.execute("SET LOCAL citus.log_remote_commands = on")
    assert seen(c) == {}, "an anonymous request carries nothing, and runs"
    c.rollback()


def test_no_token_is_carried_while_citus_passes_on_what_the_workers_log(app):
    """A thirteenth review: the client sends debug_print_parse and client_min_messages on to the
    workers (citus.propagate_set_commands), and lowers citus.worker_min_messages; each worker
    logs the parse tree of the carrying SET LOCAL, and Citus passed it on to the client, with a
    token only a SECURITY DEFINER function had set (SHOW hides it from the client)."""
    b = bob()
    with connect(app) as su:
        su.execute(sql.SQL("""CREATE FUNCTION become_bob() RETURNS void LANGUAGE plpgsql SECURITY DEFINER AS $f$
            BEGIN PERFORM set_config('auth_jwt.token', {b}, true); END $f$;
            GRANT EXECUTE ON FUNCTION become_bob() TO authenticated""").format(b=sql.Literal(b)))
    signature = b.rsplit(".", 1)[1][:20]
    try:
        c = as_user(app, None)
        sent = []
        c.add_notice_handler(lambda d: sent.append(f"{d.message_primary} {d.message_detail}"))
        for s in ("SET LOCAL citus.propagate_set_commands = 'local'", "SET LOCAL debug_print_parse = on",
                  "SET LOCAL client_min_messages = debug1", "SET LOCAL citus.worker_min_messages = debug5"):
            c.execute(s)
        c.execute("SELECT become_bob()")
        e = error_of(c, "SELECT count(*) FROM tasks")
        assert e.sqlstate == "28000" and "citus.worker_min_messages" in e.diag.message_primary, e
        assert sent and not [m for m in sent if signature in m.replace(" ", "").replace("\n", "")], "never shown"
        # Once a token was carried, it cannot be lowered, however it is set.
        for attempt in ("SET LOCAL citus.worker_min_messages = log",
                        "SELECT set_config('citus.worker_min_messages', 'debug1', true)"):
            begin(c, alice())
            assert seen(c) == {ALICE: 5}
            assert error_of(c, attempt).sqlstate == "22023", attempt
        # Set for the connection: refused at the statement that would carry, and bob's rows unseen.
        c.close()
        c = as_user(app, None, options="-c citus.worker_min_messages=log")
        c.execute("SELECT become_bob()")
        assert error_of(c, "SELECT count(*) FROM tasks").sqlstate == "28000"
        # The levels that pass on nothing a worker logs are fine, and the request runs as alice.
        begin(c, alice())
        c.execute("SET LOCAL citus.worker_min_messages = warning")
        assert seen(c) == {ALICE: 5}
        c.rollback()
        c.close()
    finally:
        with connect(app) as su:
            su.execute("DROP FUNCTION become_bob()")


def test_errors_pass_the_statement_hooks_whole(app):
    """The hooks that count statement nesting catch an ERROR only to keep the count, and throw it
    on untouched: a client still gets the constraint and table of a unique violation, and a
    caught error leaves the next statement a statement boundary, where a new token is carried."""
    with connect(app) as su:
        su.execute("CREATE TABLE local_items (id int PRIMARY KEY)")
        su.execute("GRANT INSERT ON local_items TO authenticated")
        su.execute(
            """CREATE FUNCTION count_or_zero() RETURNS bigint LANGUAGE plpgsql AS $$
               BEGIN RETURN (SELECT count(*) FROM tasks WHERE 1 / 0 = 1);
               EXCEPTION WHEN division_by_zero THEN RETURN 0; END $$"""
        )
        su.execute("GRANT EXECUTE ON FUNCTION count_or_zero() TO authenticated")
    try:
        c = as_user(app, alice())
        c.execute("INSERT INTO local_items VALUES (1)")
        e = error_of(c, "INSERT INTO local_items VALUES (1), (1)")
        assert e.sqlstate == "23505", e
        assert (e.diag.constraint_name, e.diag.table_name) == ("local_items_pkey", "local_items"), e
        begin(c, alice())
        assert one(c, "SELECT count_or_zero()") == 0
        c.execute("SELECT set_config('auth_jwt.token', %s, true)", (bob(),))
        assert seen(c) == {BOB: 5}, "carried at the next statement boundary, no error"
        c.rollback()
    finally:
        with connect(app) as su:
            su.execute("DROP TABLE local_items; DROP FUNCTION count_or_zero()")


def test_copy_and_fetch_run_with_the_token_in_force(app):
    """COPY and FETCH reach the workers without an executor start of their own: the token is
    carried before them too. SET LOCAL is a utility statement, so nothing else carries it first."""
    c = as_user(app, alice(), "set_local")

    def copied(statement: str) -> dict:
        with c.cursor().copy(statement) as copy:
            users = [row[0] for row in copy.rows()]
        return {u: users.count(u) for u in set(users)}

    assert copied("COPY (SELECT user_id FROM tasks) TO STDOUT") == {ALICE: 5}
    c.execute(sql.SQL("SET LOCAL auth_jwt.token = {}").format(sql.Literal(bob())))
    assert copied("COPY tasks (user_id) TO STDOUT") == {BOB: 5}, "COPY after the token changed"
    c.execute("DECLARE cur CURSOR FOR SELECT user_id::text FROM tasks")
    c.execute(sql.SQL("SET LOCAL auth_jwt.token = {}").format(sql.Literal(alice())))
    fetched = [r[0] for r in c.execute("FETCH ALL FROM cur").fetchall()]
    assert fetched == [ALICE] * 5, "FETCH, as on a single node, with the token in force when it runs"
    c.rollback()
    # README's limit: `COPY table TO STDOUT` as a transaction's first work on the workers runs
    # outside Citus's distributed transaction, where nothing is carried: an anonymous request.
    begin(c, alice(), "set_local")
    assert copied("COPY tasks (user_id) TO STDOUT") == {}
    c.rollback()


def test_the_carried_token_is_hidden_on_the_workers(app):
    """Citus connects to the workers as the request's role, shared by every user: there
    pg_stat_activity shows each backend's last statement to every other. The SET LOCAL that carries
    a token shows with the token hidden (a red-team reproduction read bob's token there)."""
    tokens = alice(), bob()
    signatures = [t.rsplit(".", 1)[1] for t in tokens]
    c = as_user(app, tokens[0])
    assert seen(c) == {ALICE: 5}  # opens a connection to every worker, in the transaction
    c.execute(sql.SQL("SET LOCAL auth_jwt.token = {}").format(sql.Literal(tokens[1])))
    c.execute("SELECT 1")  # carries bob's token to those connections: their last statement
    for port in WORKERS:
        with connect(app, port) as su:
            texts = [r[0] for r in su.execute("SELECT query FROM pg_stat_activity WHERE datname = current_database()")]
            assert not [t for t in texts if any(sig in t for sig in signatures)], (port, texts)
            assert [t for t in texts if "auth_jwt.token" in t and "(token not displayed)" in t], (port, texts)
    assert seen(c) == {BOB: 5}, "the value itself is intact"
    c.rollback()


# --- keys and sessions fresh on every node -----------------------------------------------------


def test_rotation_and_revocation_reach_cached_worker_connections(app):
    """0.3.0: after DELETE FROM jwks on the coordinator, a router query in the same client session
    (a cached worker connection) still accepted a token signed by the deleted key."""
    c = connect(app, user="authenticator", autocommit=False)
    su = connect(app)
    try:
        for how in ("router", "multi-shard"):
            where = ("user_id = %s", ALICE) if how == "router" else ("true",)
            begin(c, alice(1))
            assert seen(c, *where) == {ALICE: 5}, how
            c.commit()
        su.execute("DELETE FROM jwks WHERE id = 'k1'")
        for where in (("user_id = %s", ALICE), ("true",)):
            begin(c, alice(1))
            assert (error_of(c, f"SELECT count(*) FROM tasks WHERE {where[0]}", *where[1:]).sqlstate, "28000") == (
                NOT_FOUND[0],
                "28000",
            )
            begin(c, alice(2))
            assert seen(c, *where) == {ALICE: 5}, "the remaining key still verifies"
            c.commit()
        insert_key(su, 3)
        begin(c, alice(3, kid="k3"))
        assert seen(c, "user_id = %s", ALICE) == {ALICE: 5}, "a new key is used at once"
        c.commit()
        su.execute("""UPDATE jwks SET "publicKey" = %s WHERE id = 'k3'""", (jwk(4),))
        begin(c, alice(3, kid="k3"))
        assert error_of(c, "SELECT count(*) FROM tasks").sqlstate == "28000", "the replaced key is refused"
        begin(c, alice(4, kid="k3"))
        assert seen(c) == {ALICE: 5}, "its replacement is used"
        c.commit()
        su.execute("""UPDATE jwks SET "expiresAt" = now() - interval '31 days' WHERE id = 'k2'""")
        begin(c, alice(2))
        assert error_of(c, "SELECT count(*) FROM tasks").sqlstate == "28000", "an expired key is refused"
    finally:
        su.execute("DELETE FROM jwks WHERE id IN ('k1', 'k3')")
        insert_key(su, 1)
        su.execute("""UPDATE jwks SET "expiresAt" = NULL WHERE id = 'k2'""")
        c.close()


def test_a_transaction_that_began_before_the_delete(app):
    """The coordinator transaction, and its worker transactions, began (and locked every shard)
    before the key was deleted; the first verification after the delete refuses it."""
    c = connect(app, user="authenticator", autocommit=False)
    su = connect(app)
    try:
        begin(c, alice(2))
        assert seen(c) == {ALICE: 5}  # the workers' backends now hold k2
        c.commit()
        c.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        c.execute("SET LOCAL ROLE authenticated")
        assert seen(c) == {}  # anonymous: the worker transactions start, and lock the shards
        su.execute("DELETE FROM jwks WHERE id = 'k2'")
        c.execute("SELECT set_config('auth_jwt.token', %s, true)", (alice(2),))
        assert error_of(c, "SELECT count(*) FROM tasks").sqlstate == "28000"
    finally:
        insert_key(su, 2)
        c.close()


def test_sign_out_reaches_every_node(app):
    with connect(app) as su:
        su.execute("ALTER DATABASE %s SET auth_jwt.require_session = on" % app)
        su.execute(
            """INSERT INTO session (id, "expiresAt", token, "updatedAt", "userId")
               VALUES ('s-alice', now() + interval '1 day', 'opaque', now(), 'alice')"""
        )
    try:
        c = connect(app, user="authenticator", autocommit=False)
        begin(c, alice(sid="s-alice"))
        assert seen(c) == {ALICE: 5}, "a live session"
        assert seen(c, "user_id = %s", ALICE) == {ALICE: 5}
        c.commit()
        # The worker backends (cached connections) keep the session; a change that can end it
        # reaches them through their own placement's trigger.
        for change, expected in (
            ("UPDATE session SET \"expiresAt\" = now() - interval '1 second' WHERE id = 's-alice'", None),
            ("UPDATE session SET \"expiresAt\" = now() + interval '1 day' WHERE id = 's-alice'", {ALICE: 5}),
        ):
            with connect(app) as su:
                su.execute(change)
            for where in (("user_id = %s", ALICE), ("true",)):
                begin(c, alice(sid="s-alice"))
                if expected is None:
                    e = error_of(c, f"SELECT count(*) FROM tasks WHERE {where[0]}", *where[1:])
                    assert e.sqlstate == "28000" and "session has expired" in e.diag.message_primary, e
                else:
                    assert seen(c, *where) == expected
                    c.commit()
        with connect(app) as su:
            su.execute("DELETE FROM session WHERE id = 's-alice'")
        for where in (("user_id = %s", ALICE), ("true",)):
            begin(c, alice(sid="s-alice"))
            e = error_of(c, f"SELECT count(*) FROM tasks WHERE {where[0]}", *where[1:])
            assert e.sqlstate == "28000" and "session" in e.diag.message_primary, e
        c.close()
    finally:
        with connect(app) as su:
            su.execute("ALTER DATABASE %s RESET auth_jwt.require_session" % app)


# --- the cost: at most one verification per worker backend per statement -----------------------


def test_one_verification_per_worker_backend_per_statement(app, probe):
    """A multi-shard query runs several shards in each worker backend; each backend verifies a new
    token once and serves the other shards, and every row, from its per-request memo."""
    c = as_user(app, alice(seq="0"))
    c.execute("SET LOCAL citus.max_adaptive_executor_pool_size = 1")  # one backend per worker

    def per_backend() -> dict:
        """Each worker backend's verifications so far, and how many rows it scanned."""
        rows = c.execute(
            "SELECT pg_backend_pid(), max(verifications_here()), count(*) FROM probe GROUP BY 1"
        ).fetchall()
        return {pid: (verifications, n) for pid, verifications, n in rows}

    before = per_backend()
    assert sum(n for _, n in before.values()) == 64, "every row, every shard"
    assert len(before) == len(WORKERS), "one backend per worker, each running several shards"
    for seq in (1, 2, 3):
        c.execute("SELECT set_config('auth_jwt.token', %s, true)", (alice(seq=str(seq)),))
        after = per_backend()
        common = before.keys() & after.keys()
        assert common, (before, after)
        assert all(after[p][0] - before[p][0] == 1 for p in common), (seq, before, after)
        before = after
    c.rollback()


@pytest.fixture(scope="module")
def probe(app):
    """64 rows over every shard, visible to any verified token; stats() readable by the request's
    role on every node."""
    with connect(app) as su:
        su.execute("CREATE TABLE probe (k int PRIMARY KEY)")
        su.execute("SELECT create_distributed_table('probe', 'k', colocate_with => 'none')")
        su.execute("INSERT INTO probe SELECT generate_series(1, 64)")
        su.execute("ALTER TABLE probe ENABLE ROW LEVEL SECURITY")
        su.execute("CREATE POLICY verified ON probe USING (auth_jwt.jwt_claim_sub() = 'alice')")
        su.execute("GRANT SELECT ON probe TO authenticated")
    for port in NODES:
        with connect(app, port) as su:
            su.execute("SET citus.enable_ddl_propagation = off")
            su.execute("GRANT EXECUTE ON FUNCTION auth_jwt.stats() TO authenticated")
            su.execute(
                """CREATE FUNCTION verifications_here() RETURNS bigint LANGUAGE sql VOLATILE
                   AS 'SELECT verifications FROM auth_jwt.stats()'"""
            )
    yield
    for port in NODES:
        with connect(app, port) as su:
            su.execute("SET citus.enable_ddl_propagation = off")
            su.execute("DROP FUNCTION verifications_here()")
            su.execute("REVOKE EXECUTE ON FUNCTION auth_jwt.stats() FROM authenticated")


# --- a shard move --------------------------------------------------------------------------------


def test_a_shard_move_changes_nothing(app):
    with connect(app) as su:
        shard, port = su.execute(
            """SELECT shardid, nodeport FROM citus_shards
                WHERE table_name = 'tasks'::regclass AND shardid = get_shard_id_for_distribution_column('tasks', %s::uuid)""",
            (ALICE,),
        ).fetchone()
        target = next(p for p in WORKERS if p != port)
        su.execute(
            "SELECT citus_move_shard_placement(%s, %s, %s, %s, %s, 'block_writes')", (shard, HOST, port, HOST, target)
        )
        assert one(su, "SELECT nodeport FROM citus_shards WHERE shardid = %s", shard) == target
    c = as_user(app, alice())
    assert seen(c, "user_id = %s", ALICE) == {ALICE: 5}
    assert seen(c) == {ALICE: 5}
    c.rollback()
    begin(c, bob())
    assert seen(c, "user_id = %s", ALICE) == {}
    assert seen(c) == {BOB: 5}
    c.rollback()
