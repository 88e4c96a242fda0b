"""Settings that change trust cannot be changed by an application role, on any route: SET,
SET LOCAL, set_config, function SET clauses, ALTER ROLE, connection options (PGOPTIONS), before
and after the library loads, with session_preload_libraries, with shared_preload_libraries and
with neither. After each attempt, the value in force is the DBA's (database, role, database+role,
postgresql.conf), or, where PostgreSQL itself has already lost the DBA's value for the session,
every verification fails with an error that names the setting."""

import time

import psycopg
import pytest

from conftest import ISS, JWKS_DDL, PGBIN, connect, extra_cluster, jwk, one, sqlstate_of, token

# setting: (database value, database+role value = the DBA's value in force, attacker's value)
TRUST = {
    "auth_jwt.issuer": ("https://db.example.com", ISS, "*"),
    "auth_jwt.audience": ("https://db.example.com", ISS, "*"),
    "auth_jwt.jwks_table": ("public.jwks_db", "public.jwks", "public.evil"),
    "auth_jwt.leeway": ("5s", "7s", "3600"),
    "auth_jwt.key_grace_period": ("1h", "2h", "0"),
    "auth_jwt.max_token_size": ("4kB", "8kB", "1MB"),
    "auth_jwt.cache_size": ("10", "20", "0"),
    "auth_jwt.uuid_claim": ("uid", "uuid", "sub"),
    "auth_jwt.token_header": ("x-db", "authorization", "x-evil"),
    "auth_jwt.allow_session_token": ("off", "off", "on"),
    "auth_jwt.require_session": ("off", "on", "off"),
    "auth_jwt.session_table": ("public.session_db", "public.session", "public.evil"),
    "auth_jwt.session_claim": ("sid_db", "sid", "nope"),
    "auth_jwt.jwks_url": ("http://db.invalid/jwks", "", "http://127.0.0.1:1/evil"),
    "auth_jwt.jwks_max_age": ("2min", "4min", "1s"),
    "auth_jwt.jwks_cooldown": ("20s", "40s", "1s"),
    "auth_jwt.jwks_stale_if_error": ("10min", "20min", "7d"),
    "auth_jwt.jwks_timeout": ("1s", "3s", "1min"),
    "auth_jwt.jwks_max_size": ("512kB", "2MB", "64MB"),
    "auth_jwt.jwks_ca_file": ("/etc/db-ca.pem", "", "/tmp/evil.pem"),
    "auth_jwt.authenticated_role": ("db_role", "app_role", "postgres"),
    "auth_jwt.role_claim": ("role_db", "role", "sub"),
    "auth_jwt.role_claim_map": ("admin=db_admin", "", "admin=postgres"),
}
SESSION_DDL = """
CREATE TABLE public.session ("id" text not null primary key, "expiresAt" timestamptz not null,
  "token" text not null unique, "userId" text not null);
INSERT INTO public.session VALUES ('s1', now() + interval '1 day', 'secret', 'user1')"""


@pytest.fixture
def dba_db(db):
    """The `db` fixture with a database-level and a database+role-level value of every trust
    setting for app_user, as a DBA would set them."""
    su = connect(db)
    su.execute(SESSION_DDL)
    su.execute("LOAD 'auth_jwt'")
    for name, (db_value, role_value, _) in TRUST.items():
        su.execute(f"ALTER DATABASE {db} SET {name} = '{db_value}'")
        su.execute(f"ALTER ROLE app_user IN DATABASE {db} SET {name} = '{role_value}'")
    return db  # dropping the database drops its role settings too


def app(db, **opts):
    c = connect(db, user="app_user", **opts)
    notices = []
    c.add_notice_handler(lambda d: notices.append(d.message_primary))
    return c, notices


def load(c):
    """Load the library in this session (no token: nothing is verified)."""
    one(c, "SELECT auth_jwt.jwt_claims()")


def assert_dba_values_in_force(c):
    for name, (_, role_value, _) in TRUST.items():
        assert one(c, f"SHOW {name}") == role_value, name
    assert one(c, "SELECT auth_jwt.jwt_verify(%s)->>'sub'", token(1, claims='{"sid":"s1"}')) == "user1"
    # Sessions required, from the DBA's table and claim: a token without one is refused.
    assert sqlstate_of(c, "SELECT auth_jwt.jwt_verify(%s)", token(1)) == ("28000", "token has no session id")


def test_without_any_attempt_the_dba_values_are_in_force(dba_db):
    c, _ = app(dba_db)
    load(c)
    assert_dba_values_in_force(c)


@pytest.mark.parametrize("name", TRUST)
def test_connection_option_fails_closed_for_the_session(dba_db, name):
    """PostgreSQL lets a connection option outrank ALTER DATABASE/ROLE and postgresql.conf; when
    the library loads and refuses it, the DBA's value is already gone from this session."""
    attacker = TRUST[name][2]
    c, notices = app(dba_db, options=f"-c {name}={attacker}")
    load(c)
    assert any("permission denied to set parameter" in n for n in notices), notices
    # The client's value is refused, and the DBA's is gone too: the compiled default is left.
    assert one(c, "SELECT setting = boot_val FROM pg_settings WHERE name = %s", name) is True
    with pytest.raises(psycopg.errors.InsufficientPrivilege) as e:
        c.execute("SELECT auth_jwt.jwt_verify(%s)", (token(1),))
    assert e.value.diag.message_primary == f"{name} was refused for this session"
    assert "connection options" in e.value.diag.message_detail
    assert "shared_preload_libraries" in e.value.diag.message_hint
    # Every route to verification, not only jwt_verify.
    c.execute("BEGIN")
    c.execute("SELECT set_config('auth_jwt.token', %s, true)", (token(1),))
    for fn in ("jwt_claims()", "jwt_claim_uuid()", "jwt_claim_sub()"):
        c.execute("SAVEPOINT s")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute(f"SELECT auth_jwt.{fn}")
        c.execute("ROLLBACK TO SAVEPOINT s")
    c.execute("ROLLBACK")


def parallel_mode(c):
    """Make the next query run in a parallel worker (the GUC was renamed in PostgreSQL 16)."""
    version = one(c, "SELECT current_setting('server_version_num')::int")
    c.execute(f"SET {'debug_parallel_query' if version >= 160000 else 'force_parallel_mode'} = on")
    c.execute("SET parallel_setup_cost = 0")
    c.execute("SET parallel_tuple_cost = 0")


@pytest.mark.parametrize("name", ["auth_jwt.leeway", "auth_jwt.key_grace_period", "auth_jwt.jwks_table"])
def test_parallel_workers_fail_closed_too(dba_db, name):
    """A parallel worker gets the leader's settings (the displaced one at its compiled default)
    but loads the library without the leader's placeholders: it must refuse just the same."""
    connect(dba_db).execute("ALTER FUNCTION auth_jwt.jwt_verify(text) PARALLEL SAFE")  # as a DBA may, for workers
    c, _ = app(dba_db, options=f"-c {name}={TRUST[name][2]}")
    load(c)
    parallel_mode(c)
    plan = "\n".join(r[0] for r in c.execute("EXPLAIN SELECT auth_jwt.jwt_verify(t) FROM (VALUES (%s)) v(t)", (token(1),)).fetchall())
    assert "Gather" in plan, plan
    with pytest.raises(psycopg.errors.InsufficientPrivilege) as e:
        c.execute("SELECT auth_jwt.jwt_verify(t) FROM (VALUES (%s)) v(t)", (token(1),))
    assert e.value.diag.message_primary == f"{name} was refused for this session"
    # RESET ALL and DISCARD ALL do not clear the verdict.
    c.execute("RESET ALL")
    c.execute("DISCARD ALL")
    assert one(c, "SHOW auth_jwt.refused_settings") == name
    assert sqlstate_of(c, "SELECT auth_jwt.jwt_verify(%s)", token(1))[0] == "42501"
    assert sqlstate_of(c, "SET auth_jwt.refused_settings = ''")[0] == "42501"


def test_postgresql_conf_value_is_lost_to_a_connection_option_and_the_session_fails_closed(db):
    su = connect("postgres")
    su.execute("LOAD 'auth_jwt'")  # ALTER SYSTEM accepts only settings the session knows
    try:
        su.execute("ALTER SYSTEM SET auth_jwt.leeway = '7s'")
        su.execute("SELECT pg_reload_conf()")
        time.sleep(0.5)
        c, _ = app(db)
        load(c)
        assert one(c, "SHOW auth_jwt.leeway") == "7s", "the file's value is in force"
        c, _ = app(db, options="-c auth_jwt.leeway=3600")
        load(c)
        assert sqlstate_of(c, "SELECT auth_jwt.jwt_verify(%s)", token(1)) == (
            "42501", "auth_jwt.leeway was refused for this session")
    finally:
        su.execute("ALTER SYSTEM RESET auth_jwt.leeway")
        su.execute("SELECT pg_reload_conf()")


@pytest.mark.parametrize("how", ["SET {name} = '{v}'", "SELECT set_config('{name}', '{v}', false)"])
def test_session_set_before_the_library_loads_leaves_the_dba_values(dba_db, how):
    c, notices = app(dba_db)
    for name, (_, _, attacker) in TRUST.items():
        c.execute(how.format(name=name, v=attacker))  # a placeholder: accepted for now
    load(c)
    assert sum("permission denied to set parameter" in n for n in notices) == len(TRUST), notices
    assert_dba_values_in_force(c)


def test_set_local_before_the_library_loads_leaves_the_dba_values(dba_db):
    c, _ = app(dba_db)
    c.execute("BEGIN")
    for name, (_, _, attacker) in TRUST.items():
        c.execute(f"SET LOCAL {name} = '{attacker}'")
    load(c)
    assert_dba_values_in_force(c)
    c.execute("COMMIT")
    assert_dba_values_in_force(c)


def test_set_and_set_config_after_the_library_loads_are_errors(dba_db):
    c, _ = app(dba_db)
    load(c)
    for name, (_, _, attacker) in TRUST.items():
        for sql in (f"SET {name} = '{attacker}'", f"SET LOCAL {name} = '{attacker}'",
                    f"SELECT set_config('{name}', '{attacker}', true)", f"SELECT set_config('{name}', '{attacker}', false)"):
            assert sqlstate_of(c, sql)[0] == "42501", sql
    assert_dba_values_in_force(c)


def test_function_set_clause_is_refused_for_an_application_role(dba_db):
    c, _ = app(dba_db)
    connect(dba_db).execute("GRANT CREATE ON SCHEMA public TO app_user")
    for loaded in (False, True):
        if loaded:
            load(c)
        state, _ = sqlstate_of(
            c, "CREATE FUNCTION public.lenient() RETURNS jsonb LANGUAGE sql SET auth_jwt.issuer = '*' "
               "AS $$ SELECT auth_jwt.jwt_verify('x') $$")
        assert state == "42501"
    assert_dba_values_in_force(c)


def test_alter_role_set_by_the_role_itself_is_refused(dba_db):
    c, _ = app(dba_db)
    for loaded in (False, True):
        if loaded:
            load(c)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("ALTER ROLE app_user SET auth_jwt.issuer = '*'")
    assert_dba_values_in_force(c)


def test_session_preload_libraries(dba_db):
    """Loaded at connection start, but after the connection options were applied: the same
    two outcomes as without it."""
    connect(dba_db).execute(f"ALTER ROLE app_user IN DATABASE {dba_db} SET session_preload_libraries = 'auth_jwt'")
    c, _ = app(dba_db)
    assert_dba_values_in_force(c)
    assert sqlstate_of(c, "SET auth_jwt.issuer = '*'")[0] == "42501"
    c, _ = app(dba_db, options="-c auth_jwt.key_grace_period=0")
    assert sqlstate_of(c, "SELECT auth_jwt.jwt_verify(%s)", token(1)) == (
        "42501", "auth_jwt.key_grace_period was refused for this session")


def test_superuser_values_work_on_every_route(db):
    evil = token(1, iss="https://evil.example.com")
    c = connect(db, options="-c auth_jwt.issuer=https://evil.example.com")
    assert one(c, "SELECT auth_jwt.jwt_verify(%s)->>'iss'", evil) == "https://evil.example.com"
    c = connect(db)
    c.execute("SET auth_jwt.issuer = '*'")  # before the library loads, as a superuser
    assert one(c, "SELECT auth_jwt.jwt_verify(%s)->>'iss'", evil) == "https://evil.example.com"
    c.execute("BEGIN")
    c.execute("SET LOCAL auth_jwt.leeway = 0")
    assert one(c, "SHOW auth_jwt.leeway") == "0"
    c.execute("COMMIT")


def test_shared_preload_libraries_refuses_the_connection_outright():
    with extra_cluster(54339, "shared_preload_libraries = 'auth_jwt'") as port:
        su = connect("postgres", port=port)
        su.execute("CREATE ROLE app_user LOGIN")
        su.execute(JWKS_DDL)
        su.execute("INSERT INTO jwks VALUES ('k1', %s, 'x', now(), NULL, 'EdDSA', 'Ed25519')", (jwk(1),))
        su.execute("SET client_min_messages = warning")
        su.execute("CREATE EXTENSION auth_jwt")
        su.execute(f"ALTER DATABASE postgres SET auth_jwt.issuer = '{ISS}'")
        su.execute(f"ALTER DATABASE postgres SET auth_jwt.audience = '{ISS}'")
        su.execute("ALTER ROLE app_user SET auth_jwt.leeway = '7s'")
        with pytest.raises(psycopg.OperationalError, match="permission denied to set parameter"):
            connect("postgres", user="app_user", port=port, options="-c auth_jwt.leeway=3600")
        c = connect("postgres", user="app_user", port=port)
        assert one(c, "SHOW auth_jwt.leeway") == "7s"
        assert one(c, "SHOW auth_jwt.issuer") == ISS
        assert sqlstate_of(c, "SET auth_jwt.issuer = '*'")[0] == "42501"
        assert one(c, "SELECT auth_jwt.jwt_verify(%s)->>'sub'", token(1)) == "user1"
        s = connect("postgres", port=port, options="-c auth_jwt.leeway=9")
        assert one(s, "SHOW auth_jwt.leeway") == "9s", "a superuser's connection option is applied"


def test_the_token_setting_is_never_displayed(db):
    """auth_jwt.token is a bearer credential: SHOW and current_setting() do not show it, so a
    client cannot read, or copy into its own transaction, a token another client left behind.
    (Once the library is loaded: before that PostgreSQL holds a placeholder, which is why
    SECURITY.md recommends loading it at connection start.)"""
    c = connect(db, user="app_user")
    load(c)
    c.execute("BEGIN")
    one(c, "SELECT set_config('auth_jwt.token', %s, true)", token(1))
    shown = one(c, "SELECT current_setting('auth_jwt.token')")
    assert token(1)[:20] not in shown and shown == "(set; not displayed)"
    assert one(c, "SELECT auth_jwt.jwt_claim_sub()") == "user1", "the value itself is intact"
    c.execute("ROLLBACK")
    c.execute("SET auth_jwt.token = %s" % ("'" + token(1) + "'"))  # a session value left behind
    c.execute("BEGIN")
    c.execute("SELECT set_config('auth_jwt.token', current_setting('auth_jwt.token'), true)")
    assert sqlstate_of(c, "SELECT auth_jwt.jwt_claim_sub()") == ("28000", "malformed token")


def test_the_statement_that_set_the_token_shows_it_hidden(db):
    """pg_stat_activity shows a backend's last statement to every backend of the same role (behind
    a pooler, or on a Citus worker, that is every user's): the statement that set the token shows
    with the token hidden, whether it was SET LOCAL or set_config with a literal."""
    c = connect(db, user="app_user")
    load(c)
    watcher = connect(db)
    pid = one(c, "SELECT pg_backend_pid()")
    tok = token(1)
    for statement, hidden in (
        (f"SET LOCAL auth_jwt.token = '{tok}'", "SET LOCAL auth_jwt.token = '(token not displayed)'"),
        (f"SELECT set_config('auth_jwt.token', 'Bearer {tok}', true)", "SELECT set_config('auth_jwt.token', '(token not displayed)', true)"),
    ):
        c.execute("BEGIN")
        c.execute(statement)
        assert one(watcher, "SELECT query FROM pg_stat_activity WHERE pid = %s", pid) == hidden
        assert one(c, "SELECT auth_jwt.jwt_claim_sub()") == "user1", "the value itself is intact"
        c.execute("ROLLBACK")


def test_a_query_string_that_carries_tokens_shows_them_hidden_from_its_start(db):
    """A multi-statement query string that sets request.headers and auth_jwt.token with literals
    shows in pg_stat_activity with both tokens hidden from its first statement on, not only once
    the statement that assigns auth_jwt.token runs (a review read both for seconds before)."""
    import threading

    a, b = token(1), token(2)
    c = connect(db, user="app_user")
    load(c)
    pid = one(c, "SELECT pg_backend_pid()")
    headers = '{"authorization": "Bearer %s"}' % a
    text = (
        f"BEGIN; SELECT set_config('request.headers', '{headers}', true); SELECT pg_sleep(1.5); "
        f"SELECT set_config('auth_jwt.token', '{b}', true); SELECT pg_sleep(1.5); COMMIT"
    )
    done = threading.Thread(target=lambda: c.execute(text))
    done.start()
    watcher = connect(db)
    try:
        for _ in range(2):
            time.sleep(0.75)
            shown = one(watcher, "SELECT query FROM pg_stat_activity WHERE pid = %s", pid)
            assert a.rsplit(".", 1)[1] not in shown and b.rsplit(".", 1)[1] not in shown, shown
            assert shown.count("(token not displayed)") == 2, shown
            time.sleep(0.75)
    finally:
        done.join()


def test_pg_stat_statements_records_the_token_hidden():
    """pg_stat_statements (loaded before auth_jwt, as README says) records `SET LOCAL
    auth_jwt.token` with the token hidden: its text is readable by every backend of the role."""
    import os
    import subprocess

    pkglib = subprocess.run([os.path.join(PGBIN, "pg_config"), "--pkglibdir"], capture_output=True, text=True).stdout.strip()
    if not os.path.exists(os.path.join(pkglib, "pg_stat_statements.so")):
        pytest.skip("pg_stat_statements is not built for this PostgreSQL (the Debian 15 server has it)")
    conf = "shared_preload_libraries = 'pg_stat_statements,auth_jwt'"
    with extra_cluster(54341, conf) as port:
        c = connect("postgres", port=port)
        c.execute("CREATE EXTENSION pg_stat_statements")
        c.execute("CREATE EXTENSION auth_jwt")
        tok = token(1)
        c.execute("BEGIN")
        c.execute("SET LOCAL auth_jwt.token = '%s'" % tok)
        c.execute("SELECT 1; SET LOCAL auth_jwt.token TO '%s'; SELECT 2" % tok)
        c.execute("COMMIT")
        texts = [r[0] for r in c.execute("SELECT query FROM pg_stat_statements WHERE query ILIKE '%%auth_jwt.token%%'")]
        assert texts, "the statements are recorded"
        assert not [t for t in texts if tok.rsplit(".", 1)[1] in t]
        assert "SET LOCAL auth_jwt.token = '(token not displayed)*****" in " ".join(texts)
        assert "SET LOCAL auth_jwt.token TO '(token not displayed)*****" in " ".join(texts)
