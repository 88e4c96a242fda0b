"""Settings that change trust cannot be set by an application role, including at connection
time with PGOPTIONS, before the library is loaded."""

import psycopg
import pytest

from conftest import connect, one, sqlstate_of, token


@pytest.mark.parametrize(
    "option",
    [
        "-c auth_jwt.issuer=*",
        "-c auth_jwt.audience=*",
        "-c auth_jwt.jwks_table=evil.jwks",
        "-c auth_jwt.leeway=3600",
    ],
)
def test_pgoptions_cannot_change_trust_settings(db, option):
    evil = token(1, iss="https://evil.example.com", aud="https://evil.example.com", exp="-600")
    c = connect(db, user="app_user", options=option)
    warnings = []
    c.add_notice_handler(lambda d: warnings.append(d.message_primary))
    # Refused: either the token (28000), or, where the refused value displaced the database's
    # setting, the session fails closed with "auth_jwt.issuer is not set" (55000).
    state, msg = sqlstate_of(c, "SELECT auth_jwt.jwt_verify(%s)", evil)
    assert state in ("28000", "55000"), msg
    assert any("permission denied to set parameter" in w for w in warnings), warnings
    name = option.split()[1].split("=")[0]
    assert one(c, "SELECT current_setting(%s)", name) != option.split("=")[1]


def test_superuser_pgoptions_work(db):
    evil = token(1, iss="https://evil.example.com")
    c = connect(db, options="-c auth_jwt.issuer=https://evil.example.com")
    assert one(c, "SELECT auth_jwt.jwt_verify(%s)->>'iss'", evil) == "https://evil.example.com"


def test_alter_role_set_by_the_role_itself_is_refused(db):
    c = connect(db, user="app_user")
    one(c, "SELECT auth_jwt.stats_reset() IS NULL")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        c.execute("ALTER ROLE app_user SET auth_jwt.issuer = '*'")


def test_postgresql_conf_sets_trust_settings(db):
    """ALTER SYSTEM writes postgresql.auto.conf: the server-wide file path works too."""
    su = connect("postgres")
    su.execute("LOAD 'auth_jwt'")  # ALTER SYSTEM accepts only settings the session knows
    try:
        su.execute("ALTER SYSTEM SET auth_jwt.leeway = '7s'")
        su.execute("SELECT pg_reload_conf()")
        import time

        time.sleep(0.5)
        c = connect(db, user="app_user")
        one(c, "SELECT auth_jwt.stats_reset() IS NULL")  # load the library
        assert one(c, "SHOW auth_jwt.leeway") == "7s"
    finally:
        su.execute("ALTER SYSTEM RESET auth_jwt.leeway")
        su.execute("SELECT pg_reload_conf()")
