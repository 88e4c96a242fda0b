"""CREATE and DROP EXTENSION: the trigger on the key table comes and goes with the extension."""

import pytest

from conftest import connect, one


def test_drop_extension_leaves_nothing_behind(db):
    c = connect(db)
    assert one(c, "SELECT count(*) FROM pg_trigger WHERE tgname = 'auth_jwt_key_change'") == 2  # jwks and auth_jwt.jwks
    c.execute("DROP EXTENSION auth_jwt")
    assert one(c, "SELECT count(*) FROM pg_trigger WHERE tgname = 'auth_jwt_key_change'") == 0
    assert one(c, "SELECT count(*) FROM pg_namespace WHERE nspname = 'auth_jwt'") == 0
    assert one(c, "SELECT count(*) FROM pg_proc WHERE prosrc LIKE 'auth_jwt%' OR proname LIKE 'jwt_%'") == 0
    assert one(c, "SELECT count(*) FROM jwks") == 2, "user data untouched"
    c.execute("SET client_min_messages = warning")
    c.execute("CREATE EXTENSION auth_jwt")
    assert one(c, "SELECT action FROM auth_jwt.watch_key_table()") == "already watched"


def test_extension_before_table_then_watch(db):
    c = connect(db)
    c.execute("DROP EXTENSION auth_jwt")
    c.execute("ALTER TABLE jwks RENAME TO jwks_old")
    notices = []
    c.add_notice_handler(lambda d: notices.append(d.message_primary))
    c.execute("CREATE EXTENSION auth_jwt")
    assert any("does not exist yet" in n for n in notices), notices
    c.execute("ALTER TABLE jwks_old RENAME TO jwks")
    assert one(c, "SELECT action FROM auth_jwt.watch_key_table()") == "trigger created"
    assert one(c, "SELECT action FROM auth_jwt.watch_key_table()") == "already watched"


def test_watch_key_table_is_superuser_only(db):
    c = connect(db, user="app_user")
    import psycopg
    import pytest

    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        c.execute("SELECT auth_jwt.watch_key_table()")


def catalog(c):
    """Everything the extension owns, with full definitions."""
    members = c.execute(
        "SELECT pg_describe_object(classid, objid, objsubid) FROM pg_depend "
        "WHERE refclassid = 'pg_extension'::regclass AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'auth_jwt') "
        "AND deptype = 'e' ORDER BY 1"
    ).fetchall()
    functions = c.execute(
        "SELECT p.oid::regprocedure::text, pg_get_functiondef(p.oid), proacl::text FROM pg_proc p "
        "JOIN pg_namespace n ON n.oid = p.pronamespace WHERE nspname = 'auth_jwt' ORDER BY 1"
    ).fetchall()
    return members, functions


def triggers(c):
    return c.execute(
        "SELECT tgrelid::regclass::text, tgname, tgtype, tgenabled FROM pg_trigger "
        "WHERE tgfoid = to_regprocedure('auth_jwt.on_key_change()') ORDER BY 1, 2"
    ).fetchall()


@pytest.mark.parametrize("release", ["0.1.0", "0.2.0", "0.3.0"])
def test_upgrade_from_each_release(db, release):
    from conftest import ISS, token

    c = connect(db)
    c.execute("DROP EXTENSION auth_jwt")
    c.execute("SET client_min_messages = warning")
    c.execute(f"CREATE EXTENSION auth_jwt VERSION '{release}'")
    t = token(1)
    assert one(c, "SELECT auth_jwt.jwt_verify(%s)->>'iss'", t) == ISS
    if release in ("0.1.0", "0.2.0"):
        # Those releases watched the key table with a statement-level trigger (tgtype 60). Their
        # scripts call watch_key_table() from today's library, so put back what they left.
        c.execute("DROP TRIGGER auth_jwt_key_change ON jwks")
        c.execute("CREATE TRIGGER auth_jwt_key_change AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON jwks "
                  "FOR EACH STATEMENT EXECUTE FUNCTION auth_jwt.on_key_change()")
        c.execute("ALTER TABLE jwks ENABLE ALWAYS TRIGGER auth_jwt_key_change")
        assert triggers(c) == [("jwks", "auth_jwt_key_change", 60, "A")]
    c.execute("ALTER EXTENSION auth_jwt UPDATE")
    assert one(c, "SELECT extversion FROM pg_extension WHERE extname = 'auth_jwt'") == "0.4.0"
    assert one(c, "SELECT bool_and(ok) FROM auth_jwt.jwt_explain(%s) WHERE step <> 'uuid claim'", t) is True
    upgraded = catalog(c), triggers(c)
    assert upgraded[1] == [("auth_jwt.jwks", "auth_jwt_key_change", 29, "A"), ("jwks", "auth_jwt_key_change", 29, "A")], \
        "the row-level trigger replaced it; the import table has its own"
    c.execute("DROP EXTENSION auth_jwt")
    assert one(c, "SELECT count(*) FROM pg_trigger WHERE tgname = 'auth_jwt_key_change'") == 0, "it goes with the extension"
    c.execute("CREATE EXTENSION auth_jwt")
    assert (catalog(c), triggers(c)) == upgraded, "an upgraded database has exactly what a fresh install has"
