"""Every shape a key table can take is either watched (a change reaches every backend as an
invalidation) or known to be unwatched (keys re-read in every transaction, with a WARNING):
partitioned tables and their partitions, including ones attached later; inheritance children,
including ones created later; views over functions; triggers left in ENABLE (origin) state;
triggers that only look like ours; and a key table fed by logical replication, whose apply
worker fires row triggers only, with session_replication_role = replica."""

import psycopg
import pytest

from conftest import JWKS_DDL, connect, jwk, one, sqlstate_of, subscribed, token, wait_for

NOT_FOUND = ("28000", "unable to find matching signing key")
COLUMNS = """("id" text not null, "publicKey" text not null, "privateKey" text not null,
  "createdAt" timestamptz not null, "expiresAt" timestamptz, "alg" text, "crv" text)"""


def sub(conn, tok):
    return one(conn, "SELECT auth_jwt.jwt_verify(%s)->>'sub'", tok)


def key_row(seed, created="now()"):
    return f"('k{seed}', '{jwk(seed)}', 'x', {created}, NULL, 'EdDSA', 'Ed25519')"


def backend(db):
    c = connect(db)
    notices = []
    c.add_notice_handler(lambda d: notices.append(d.message_primary))
    return c, notices


def watch(su):
    return dict(su.execute("SELECT relation, action FROM auth_jwt.watch_key_table()").fetchall())


def use_table(su, db, table):
    su.execute(f"ALTER DATABASE {db} SET auth_jwt.jwks_table = '{table}'")
    su.execute(f"SET auth_jwt.jwks_table = '{table}'")


def test_partitioned_table_and_a_partition_attached_later(db):
    su = connect(db)
    su.execute(f"CREATE TABLE pjwks {COLUMNS} PARTITION BY RANGE (\"createdAt\")")
    su.execute("CREATE TABLE pjwks_old PARTITION OF pjwks FOR VALUES FROM (MINVALUE) TO ('2100-01-01')")
    su.execute(f"INSERT INTO pjwks VALUES {key_row(1)}, {key_row(2)}")
    use_table(su, db, "public.pjwks")
    assert watch(su) == {
        "public.pjwks": "trigger created",
        "public.pjwks_old": "watched through its partitioned parent's trigger",
    }
    a, notices = backend(db)
    assert sub(a, token(1)) == "user1"
    # A DELETE on the partition itself, not through the parent.
    su.execute("DELETE FROM pjwks_old WHERE id = 'k1'")
    assert sqlstate_of(a, "SELECT auth_jwt.jwt_verify(%s)", token(1)) == NOT_FOUND
    # A partition attached later, already holding a key: attaching invalidates the parent, and
    # the parent's trigger is cloned onto it, ENABLE ALWAYS included.
    su.execute(f"CREATE TABLE pjwks_new {COLUMNS}")
    su.execute("INSERT INTO pjwks_new VALUES " + key_row(3, "'2101-01-01'"))
    su.execute("ALTER TABLE pjwks ATTACH PARTITION pjwks_new FOR VALUES FROM ('2100-01-01') TO (MAXVALUE)")
    assert sub(a, token(3, kid="k3")) == "user3"
    su.execute("DELETE FROM pjwks_new WHERE id = 'k3'")
    assert sqlstate_of(a, "SELECT auth_jwt.jwt_verify(%s)", token(3, kid="k3")) == NOT_FOUND
    assert sub(a, token(2)) == "user2"
    assert not [n for n in notices if "not watched" in n], notices


def test_inheritance_children_including_one_created_later(db):
    su = connect(db)
    su.execute(f"CREATE TABLE ijwks {COLUMNS}")
    su.execute("CREATE TABLE ijwks_child () INHERITS (ijwks)")
    su.execute(f"INSERT INTO ijwks_child VALUES {key_row(1)}")
    su.execute(f"INSERT INTO ijwks VALUES {key_row(2)}")
    use_table(su, db, "public.ijwks")
    assert watch(su) == {"public.ijwks": "trigger created", "public.ijwks_child": "trigger created"}
    a, notices = backend(db)
    assert sub(a, token(1)) == "user1"
    su.execute("DELETE FROM ijwks_child WHERE id = 'k1'")
    assert sqlstate_of(a, "SELECT auth_jwt.jwt_verify(%s)", token(1)) == NOT_FOUND
    # A child created later has no trigger: adding it invalidates the parent, the next load
    # finds the child unwatched, warns, and re-reads keys in every transaction.
    su.execute("CREATE TABLE ijwks_late () INHERITS (ijwks)")
    su.execute(f"INSERT INTO ijwks_late VALUES {key_row(3)}")
    assert sub(a, token(3, kid="k3")) == "user3"
    assert any("ijwks_late: it has no key-change trigger" in n for n in notices), notices
    su.execute("DELETE FROM ijwks_late WHERE id = 'k3'")
    assert sqlstate_of(a, "SELECT auth_jwt.jwt_verify(%s)", token(3, kid="k3")) == NOT_FOUND
    assert watch(su)["public.ijwks_late"] == "trigger created"
    b, notices_b = backend(db)
    assert sub(b, token(2)) == "user2"
    assert not notices_b, notices_b


def test_view_over_a_function_is_never_watched(db):
    su = connect(db)
    su.execute("CREATE FUNCTION public.keys_fn() RETURNS SETOF public.jwks LANGUAGE sql STABLE AS 'SELECT * FROM public.jwks'")
    su.execute("CREATE VIEW fjwks AS SELECT id, \"publicKey\" FROM public.keys_fn()")
    use_table(su, db, "public.fjwks")
    warnings = []
    su.add_notice_handler(lambda d: warnings.append(d.message_primary))
    assert watch(su)["public.fjwks"].startswith("not watchable: its view definition calls public.keys_fn()")
    assert any("keys_fn()" in w for w in warnings), warnings
    a, notices = backend(db)
    assert sub(a, token(1)) == "user1"
    assert any("not watched" in n and "keys_fn()" in n for n in notices), notices
    su.execute("DELETE FROM jwks WHERE id = 'k1'")  # jwks itself is watched; the view is not
    assert sqlstate_of(a, "SELECT auth_jwt.jwt_verify(%s)", token(1)) == NOT_FOUND
    assert sub(a, token(2)) == "user2"


def test_trigger_left_in_origin_state_is_not_watched_until_reenabled(db):
    """DISABLE TRIGGER ALL then ENABLE TRIGGER ALL leaves state O, which does not fire under
    session_replication_role = replica (how logical-replication apply runs)."""
    su = connect(db)
    su.execute("ALTER TABLE jwks DISABLE TRIGGER ALL")
    su.execute("ALTER TABLE jwks ENABLE TRIGGER ALL")
    a, notices = backend(db)
    assert sub(a, token(1)) == "user1"
    assert any("not ENABLE ALWAYS" in n for n in notices), notices
    su.execute("SET session_replication_role = replica")
    su.execute("DELETE FROM jwks WHERE id = 'k1'")
    assert sqlstate_of(a, "SELECT auth_jwt.jwt_verify(%s)", token(1)) == NOT_FOUND
    su.execute("RESET session_replication_role")
    assert watch(su)["public.jwks"].startswith("trigger auth_jwt_key_change re-enabled (was state O")
    assert one(su, "SELECT tgenabled FROM pg_trigger WHERE tgname = 'auth_jwt_key_change' AND tgrelid = 'public.jwks'::regclass") == "A"


def test_a_trigger_is_recognised_by_what_it_does_not_its_name(db):
    su = connect(db)
    su.execute("DROP TRIGGER auth_jwt_key_change ON jwks")
    su.execute("CREATE FUNCTION public.noop() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NULL; END'")
    su.execute("CREATE TRIGGER auth_jwt_key_change AFTER INSERT OR UPDATE OR DELETE ON jwks "
               "FOR EACH ROW EXECUTE FUNCTION public.noop()")
    su.execute("ALTER TABLE jwks ENABLE ALWAYS TRIGGER auth_jwt_key_change")
    with pytest.raises(psycopg.errors.DuplicateObject) as e:
        su.execute("SELECT auth_jwt.watch_key_table()")
    assert "calls public.noop()" in e.value.diag.message_primary
    a, notices = backend(db)
    assert sub(a, token(1)) == "user1"
    assert any("it has no key-change trigger" in n for n in notices), notices
    su.execute("DELETE FROM jwks WHERE id = 'k1'")
    assert sqlstate_of(a, "SELECT auth_jwt.jwt_verify(%s)", token(1)) == NOT_FOUND
    # Our function, but only for one column's updates: not our trigger's job either.
    su.execute("DROP TRIGGER auth_jwt_key_change ON jwks")
    su.execute("CREATE TRIGGER partial AFTER UPDATE OF \"expiresAt\" ON jwks FOR EACH ROW EXECUTE FUNCTION auth_jwt.on_key_change()")
    su.execute("ALTER TABLE jwks ENABLE ALWAYS TRIGGER partial")
    assert watch(su)["public.jwks"] == "trigger created"


def test_the_statement_level_trigger_of_0_2_0_is_replaced(db):
    su = connect(db)
    su.execute("DROP TRIGGER auth_jwt_key_change ON jwks")
    su.execute("CREATE TRIGGER auth_jwt_key_change AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON jwks "
               "FOR EACH STATEMENT EXECUTE FUNCTION auth_jwt.on_key_change()")
    su.execute("ALTER TABLE jwks ENABLE ALWAYS TRIGGER auth_jwt_key_change")
    assert watch(su) == {"public.jwks": "trigger replaced by a row-level one"}
    assert watch(su) == {"public.jwks": "already watched"}


@pytest.fixture
def replicated(db):
    """Better Auth's database (a publication of its jwks) and the app's database `db` (a
    subscription into its own jwks, with auth_jwt), in the test cluster."""
    rows = [f"INSERT INTO jwks VALUES {key_row(1)}, {key_row(2)}, {key_row(4)}"]
    with subscribed(db, "jwks", JWKS_DDL, rows, 3) as both:
        yield both


def test_logical_replication_apply_invalidates_every_backend(replicated, db):
    pub, s = replicated
    a, notices = backend(db)
    assert sub(a, token(1)) == "user1"
    assert sub(a, token(2)) == "user2"
    pub.execute("DELETE FROM jwks WHERE id = 'k1'")
    wait_for(s, "SELECT count(*) = 0 FROM jwks WHERE id = 'k1'")
    assert sqlstate_of(a, "SELECT auth_jwt.jwt_verify(%s)", token(1)) == NOT_FOUND
    pub.execute("UPDATE jwks SET \"publicKey\" = %s WHERE id = 'k2'", (jwk(7),))
    wait_for(s, f"SELECT \"publicKey\" = '{jwk(7)}' FROM jwks WHERE id = 'k2'")
    assert sqlstate_of(a, "SELECT auth_jwt.jwt_verify(%s)", token(2)) == ("28000", "invalid token signature")
    assert sub(a, token(7, kid="k2")) == "user7"
    pub.execute(f"INSERT INTO jwks VALUES {key_row(3)}")
    wait_for(s, "SELECT count(*) = 1 FROM jwks WHERE id = 'k3'")
    assert sub(a, token(3, kid="k3")) == "user3"
    pub.execute("TRUNCATE jwks")
    wait_for(s, "SELECT count(*) = 0 FROM jwks")
    assert sqlstate_of(a, "SELECT auth_jwt.jwt_verify(%s)", token(4)) == NOT_FOUND
    assert not [n for n in notices if "not watched" in n], notices


def test_a_schema_renamed_away_and_replaced(db):
    """ALTER SCHEMA ... RENAME sends no invalidation of the key table itself, yet the name the
    setting holds now means another relation."""
    su = connect(db)
    su.execute("CREATE SCHEMA auth")
    su.execute(f"CREATE TABLE auth.jwks {COLUMNS}")
    su.execute(f"INSERT INTO auth.jwks VALUES {key_row(1)}")
    use_table(su, db, "auth.jwks")
    watch(su)
    a, _ = backend(db)
    assert sub(a, token(1)) == "user1"
    su.execute("ALTER SCHEMA auth RENAME TO auth_old")
    su.execute("CREATE SCHEMA auth")
    su.execute(f"CREATE TABLE auth.jwks {COLUMNS}")
    su.execute(f"INSERT INTO auth.jwks VALUES {key_row(2)}")
    watch(su)
    assert sqlstate_of(a, "SELECT auth_jwt.jwt_verify(%s)", token(1)) == NOT_FOUND
    assert sub(a, token(2)) == "user2"


def test_row_level_security_on_the_key_table_is_watched_through(db):
    """Better Auth's role owns the key table with FORCE ROW LEVEL SECURITY and a policy that
    hides revoked ids listed in another table: that table must be watched too."""
    su = connect(db)
    su.execute("CREATE ROLE ba_owner NOLOGIN")
    su.execute("CREATE TABLE revoked_keys (kid text PRIMARY KEY)")
    su.execute("ALTER TABLE jwks OWNER TO ba_owner")
    su.execute("ALTER TABLE revoked_keys OWNER TO ba_owner")
    su.execute("ALTER TABLE jwks ENABLE ROW LEVEL SECURITY")
    su.execute("ALTER TABLE jwks FORCE ROW LEVEL SECURITY")
    su.execute("CREATE POLICY not_revoked ON jwks USING (id NOT IN (SELECT kid FROM revoked_keys))")
    assert watch(su)["public.revoked_keys"] == "trigger created"
    a, notices = backend(db)
    assert sub(a, token(1)) == "user1"
    su.execute("INSERT INTO revoked_keys VALUES ('k1')")
    assert sqlstate_of(a, "SELECT auth_jwt.jwt_verify(%s)", token(1)) == NOT_FOUND
    assert sub(a, token(2)) == "user2"
    assert not [n for n in notices if "not watched" in n], notices
    su.execute("ALTER TABLE jwks OWNER TO postgres")  # let the fixture drop the role's objects
    su.execute("ALTER TABLE revoked_keys OWNER TO postgres")
    su.execute("DROP ROLE ba_owner")


def test_a_function_called_through_an_operator_is_found(db):
    """pg_depend records the operator, not the function behind it: the view's stored expression
    tree is read instead, and any function that is not a built-in immutable one makes the view
    unwatchable (keys re-read in every transaction, with a WARNING)."""
    su = connect(db)
    su.execute("CREATE TABLE revoked_keys (kid text PRIMARY KEY)")
    su.execute("""CREATE FUNCTION public.not_revoked(text, boolean) RETURNS boolean LANGUAGE sql STABLE
                  AS $$ SELECT (NOT EXISTS (SELECT FROM public.revoked_keys WHERE kid = $1)) = $2 $$""")
    su.execute("CREATE OPERATOR public.=?= (LEFTARG = text, RIGHTARG = boolean, FUNCTION = public.not_revoked)")
    su.execute("CREATE VIEW active_keys AS SELECT * FROM jwks WHERE id OPERATOR(public.=?=) true")
    use_table(su, db, "public.active_keys")
    assert "public.not_revoked(text,boolean)" in watch(su)["public.active_keys"]
    a, notices = backend(db)
    assert sub(a, token(1)) == "user1"
    assert any("not_revoked" in n for n in notices), notices
    su.execute("INSERT INTO revoked_keys VALUES ('k1')")
    assert sqlstate_of(a, "SELECT auth_jwt.jwt_verify(%s)", token(1)) == NOT_FOUND
    # A built-in that is not immutable (the clock) is as unwatchable as a user function.
    su.execute("CREATE VIEW current_keys AS SELECT * FROM jwks WHERE \"createdAt\" <= now()")
    use_table(su, db, "public.current_keys")
    assert "now()" in watch(su)["public.current_keys"]
    # A view of built-in immutable operators only is watched through its table.
    su.execute("CREATE VIEW plain_keys AS SELECT * FROM jwks WHERE lower(id) = id")
    use_table(su, db, "public.plain_keys")
    assert watch(su) == {"public.jwks": "already watched"}


def test_a_view_over_the_clock_or_a_catalog_is_never_watched(db):
    """Red-team finding: CURRENT_TIMESTAMP (an SQL value function, not a function call in the
    stored tree) and system catalogs (on which pg_depend records nothing) change a view's rows
    without any invalidation. Such a view counted as watched, and a backend kept a key the view
    no longer showed, transaction after transaction."""
    su = connect(db)
    su.execute("ALTER TABLE jwks ADD COLUMN revoke_at timestamptz")
    su.execute("CREATE VIEW timed_keys AS SELECT * FROM jwks WHERE revoke_at IS NULL OR revoke_at > CURRENT_TIMESTAMP")
    use_table(su, db, "public.timed_keys")
    assert "SQL value function" in watch(su)["public.timed_keys"]
    a, notices = backend(db)
    assert sub(a, token(1)) == "user1"
    assert any("not watched" in n for n in notices), notices
    su.execute("UPDATE jwks SET revoke_at = clock_timestamp() + interval '1 second' WHERE id = 'k1'")
    assert sub(a, token(1)) == "user1", "not revoked yet"
    import time

    time.sleep(1.2)
    assert sqlstate_of(a, "SELECT auth_jwt.jwt_verify(%s)", token(1)) == NOT_FOUND, "the clock moved: read again"
    # A catalog in the view: a role dropped sends no invalidation of the view.
    su.execute("CREATE ROLE keys_on")
    su.execute("CREATE VIEW switched_keys AS SELECT * FROM jwks WHERE EXISTS "
               "(SELECT FROM pg_catalog.pg_roles WHERE rolname = 'keys_on')")
    use_table(su, db, "public.switched_keys")
    assert "pg_authid" in watch(su)["public.switched_keys"] or "pg_roles" in watch(su)["public.switched_keys"]
    a, notices = backend(db)
    assert sub(a, token(2)) == "user2"
    su.execute("DROP ROLE keys_on")
    assert sqlstate_of(a, "SELECT auth_jwt.jwt_verify(%s)", token(2)) == NOT_FOUND
