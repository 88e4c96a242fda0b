"""A token authenticates only the transaction that set it. Anything that survives the
transaction is refused, so a pooled connection cannot carry one client's identity into another
client's transaction."""

import json

import psycopg
import pytest

from conftest import connect, one, token


def titles(conn):
    return sorted(r[0] for r in conn.execute("SELECT title FROM tasks").fetchall())


SESSION_MSG = "token was set for the session, not the transaction"


def refused(conn, sql="SELECT title FROM tasks"):
    with pytest.raises(psycopg.Error) as e:
        conn.execute(sql)
    assert (e.value.sqlstate, e.value.diag.message_primary) == ("28000", SESSION_MSG)
    assert "SET LOCAL" in e.value.diag.message_hint


def test_set_local_lasts_one_transaction(app_db):
    c = connect(app_db, user="authenticator")
    c.execute("BEGIN")
    c.execute("SET LOCAL ROLE authenticated")
    c.execute("SELECT set_config('auth_jwt.token', %s, true)", (token(1),))
    assert titles(c) == ["task of user1"]
    c.execute("COMMIT")
    c.execute("BEGIN")
    c.execute("SET LOCAL ROLE authenticated")
    assert titles(c) == [], "the next transaction is anonymous"
    assert one(c, "SELECT auth_jwt.jwt_claim_uuid()") is None
    c.execute("COMMIT")


@pytest.mark.parametrize(
    "how",
    [
        "SET auth_jwt.token = '{t}'",
        "SELECT set_config('auth_jwt.token', '{t}', false)",
    ],
)
def test_session_scoped_token_is_refused_now_and_later(app_db, how):
    c = connect(app_db, user="authenticator")
    c.execute(how.format(t=token(1)))
    c.execute("BEGIN")
    c.execute("SET LOCAL ROLE authenticated")
    refused(c)
    c.execute("ROLLBACK")
    # Also in an explicit transaction that does the session SET itself.
    c.execute("BEGIN")
    c.execute(how.format(t=token(1)))
    c.execute("SET LOCAL ROLE authenticated")
    refused(c)
    c.execute("ROLLBACK")


def test_session_scoped_headers_are_refused(app_db):
    c = connect(app_db, user="authenticator")
    c.execute("SELECT set_config('request.headers', %s, false)", (json.dumps({"authorization": f"Bearer {token(1)}"}),))
    c.execute("BEGIN")
    c.execute("SET LOCAL ROLE authenticated")
    refused(c)
    c.execute("ROLLBACK")


def test_alter_role_and_pgoptions_tokens_are_refused(app_db):
    su = connect(app_db)
    su.execute(f"ALTER ROLE authenticator IN DATABASE {app_db} SET auth_jwt.token = '{token(1)}'")
    c = connect(app_db, user="authenticator")
    c.execute("BEGIN")
    c.execute("SET LOCAL ROLE authenticated")
    refused(c)
    c.execute("ROLLBACK")
    # SET LOCAL ... TO DEFAULT brings back the role's value: still not a transaction's own token.
    c.execute("BEGIN")
    c.execute("SET LOCAL ROLE authenticated")
    c.execute("SET LOCAL auth_jwt.token TO DEFAULT")
    refused(c)
    c.execute("ROLLBACK")
    su.execute(f"ALTER ROLE authenticator IN DATABASE {app_db} RESET auth_jwt.token")
    c = connect(app_db, user="authenticator", options=f"-c auth_jwt.token={token(2)}")
    c.execute("BEGIN")
    c.execute("SET LOCAL ROLE authenticated")
    refused(c)
    c.execute("ROLLBACK")


def test_savepoint_rollback_cannot_resurrect_a_session_token(app_db):
    c = connect(app_db, user="authenticator")
    c.execute(f"SET auth_jwt.token = '{token(1)}'")  # left behind by a previous client
    c.execute("BEGIN")
    c.execute("SET LOCAL ROLE authenticated")
    c.execute("SAVEPOINT s")
    c.execute("SELECT set_config('auth_jwt.token', %s, true)", (token(2),))
    assert titles(c) == ["task of user2"]
    c.execute("ROLLBACK TO SAVEPOINT s")
    refused(c)
    c.execute("ROLLBACK")


def test_function_set_clause_is_transaction_scoped(app_db):
    su = connect(app_db)
    su.execute(
        f"""CREATE FUNCTION public.tasks_of_user2() RETURNS SETOF text LANGUAGE sql
            SET auth_jwt.token = '{token(2)}' AS $$ SELECT title FROM public.tasks $$"""
    )
    c = connect(app_db, user="authenticator")
    c.execute("BEGIN")
    c.execute("SET LOCAL ROLE authenticated")
    assert [r[0] for r in c.execute("SELECT * FROM public.tasks_of_user2()").fetchall()] == ["task of user2"]
    assert titles(c) == []
    c.execute("ROLLBACK")


def test_superuser_can_allow_session_tokens_for_direct_connections(app_db):
    su = connect(app_db)
    su.execute(f"ALTER ROLE authenticator IN DATABASE {app_db} SET auth_jwt.allow_session_token = on")
    c = connect(app_db, user="authenticator")
    c.execute(f"SET auth_jwt.token = '{token(1)}'")
    c.execute("BEGIN")
    c.execute("SET LOCAL ROLE authenticated")
    assert titles(c) == ["task of user1"]
    c.execute("COMMIT")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        c.execute("SET auth_jwt.allow_session_token = off")
