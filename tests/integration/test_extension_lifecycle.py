"""CREATE and DROP EXTENSION: the trigger on the key table comes and goes with the extension."""

from conftest import connect, one


def test_drop_extension_leaves_nothing_behind(db):
    c = connect(db)
    assert one(c, "SELECT count(*) FROM pg_trigger WHERE tgname = 'auth_jwt_key_change'") == 1
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
