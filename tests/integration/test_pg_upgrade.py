"""pg_upgrade keeps auth_jwt working: a PostgreSQL 15 cluster with Better Auth's tables, auth_jwt,
keys, tasks and policies is upgraded to 17; afterwards tokens signed before the upgrade verify,
RLS isolates users, the key-change trigger still invalidates caches, and ALTER EXTENSION UPDATE
has nothing to do. Run by scripts/test with PG_UPGRADE_FROM and PG_UPGRADE_TO (bin directories)
when both majors are built; skipped otherwise."""

import os
import shutil
import subprocess
import tempfile

import psycopg
import pytest

from conftest import ISS, ROOT, as_request, jwk, one, pg, token, user_uuid

OLD, NEW = os.environ.get("PG_UPGRADE_FROM"), os.environ.get("PG_UPGRADE_TO")
pytestmark = pytest.mark.skipif(not (OLD and NEW), reason="needs PG_UPGRADE_FROM and PG_UPGRADE_TO")
OLD_PORT, NEW_PORT = 54350, 54351


def connect(port, db="app", user="postgres", autocommit=True):
    return psycopg.connect(f"host={os.environ['PGHOST']} port={port} dbname={db} user={user}", autocommit=autocommit)


def initdb(bindir):
    data = tempfile.mkdtemp(prefix="auth_jwt-upgrade-")
    shutil.chown(data, "postgres", "postgres")
    os.chmod(data, 0o700)
    # pg_upgrade needs the same checksum setting on both sides; PostgreSQL 18's initdb turns them on.
    no_checksums = ["--no-data-checksums"] if "--no-data-checksums" in pg(f"{bindir}/initdb", "--help").stdout else []
    pg(f"{bindir}/initdb", "-D", data, "-A", "trust", "-U", "postgres", "-E", "UTF8", *no_checksums)
    with open(os.path.join(data, "postgresql.conf"), "a") as f:
        f.write(f"\nlisten_addresses = ''\nunix_socket_directories = '{os.environ['PGHOST']}'\nfsync = off\n")
    return data


def ctl(bindir, data, action, port):
    pg(f"{bindir}/pg_ctl", "-D", data, "-l", f"{data}/log", "-o", f"-p {port}", "-w", action)


def pg_upgrade(old, new, work):
    return subprocess.run(
        ["runuser", "-u", "postgres", "--", f"{NEW}/pg_upgrade", "-b", OLD, "-B", NEW, "-d", old, "-D", new,
         "-p", str(OLD_PORT), "-P", str(NEW_PORT), "-s", os.environ["PGHOST"]],
        cwd=work, capture_output=True, text=True,
    )


def upgrade_logs(new):
    return subprocess.run(f"tail -n 25 {new}/pg_upgrade_output.d/*/log/pg_upgrade_dump_*.log", shell=True,
                          capture_output=True, text=True).stdout


# Debian's PostgreSQL 15.20 (bookworm-security) stores an attribute option `pg_attver` on every
# user column, which no other PostgreSQL build here knows: pg_upgrade's restore of the schema
# then fails on any table at all, auth_jwt or not. The README gives this workaround, run as a
# superuser in every database of the old cluster just before pg_upgrade.
STRIP_ATTVER = """UPDATE pg_catalog.pg_attribute
    SET attoptions = NULLIF(ARRAY(SELECT o FROM unnest(attoptions) o WHERE o NOT LIKE 'pg_attver=%'), '{}')
  WHERE attoptions::text LIKE '%pg_attver=%'"""


def titles(c):
    return [r[0] for r in c.execute("SELECT title FROM tasks ORDER BY title").fetchall()]


def test_upgrade_from_15_to_17_keeps_verification_rls_and_invalidation():
    old = initdb(OLD)
    new = initdb(NEW)
    work = tempfile.mkdtemp(prefix="auth_jwt-upgrade-work-")
    shutil.chown(work, "postgres", "postgres")
    try:
        ctl(OLD, old, "start", OLD_PORT)
        with connect(OLD_PORT, "postgres") as c:
            c.execute("CREATE DATABASE app")
        with connect(OLD_PORT) as c:
            c.execute("SET client_min_messages = warning")
            for f in ("better_auth_schema.sql", "example_app.sql"):
                c.execute(open(os.path.join(ROOT, "sql", f)).read())
            for seed in (1, 2):
                c.execute("INSERT INTO jwks VALUES (%s, %s, 'x', now(), NULL, 'EdDSA', 'Ed25519')", (f"k{seed}", jwk(seed)))
                c.execute('INSERT INTO "user" (id, name, email, "emailVerified", uuid) VALUES (%s, %s, %s, true, %s)',
                          (f"user{seed}", f"User {seed}", f"user{seed}@example.com", user_uuid(seed)))
                c.execute("INSERT INTO tasks (user_id, title) VALUES (%s, %s)", (user_uuid(seed), f"task of user{seed}"))
            c.execute("ALTER DATABASE app SET auth_jwt.issuer = %s" % f"'{ISS}'")
            c.execute("ALTER DATABASE app SET auth_jwt.audience = %s" % f"'{ISS}'")
        signed_before = {seed: token(seed, exp="+3600") for seed in (1, 2)}
        with connect(OLD_PORT) as c:
            assert one(c, "SELECT auth_jwt.jwt_verify(%s)->>'sub'", signed_before[1]) == "user1"
            version = one(c, "SELECT extversion FROM pg_extension WHERE extname = 'auth_jwt'")
            attver = one(c, "SELECT count(*) FROM pg_attribute WHERE attoptions::text LIKE '%pg_attver=%'")
        ctl(OLD, old, "stop", OLD_PORT)

        if attver:
            out = pg_upgrade(old, new, work)
            assert out.returncode != 0 and "pg_attver" in upgrade_logs(new), "the Debian 15.20 quirk, as documented"
            shutil.rmtree(new)
            new = initdb(NEW)
            ctl(OLD, old, "start", OLD_PORT)
            for dbname in ("app", "postgres", "template1"):
                with connect(OLD_PORT, dbname) as c:
                    c.execute(STRIP_ATTVER)
            ctl(OLD, old, "stop", OLD_PORT)
        out = pg_upgrade(old, new, work)
        if out.returncode != 0:
            pytest.fail(out.stdout[-1500:] + upgrade_logs(new)[-4000:])
        ctl(NEW, new, "start", NEW_PORT)

        su = connect(NEW_PORT)
        new_major = pg(f"{NEW}/pg_config", "--version").stdout.split()[1].split(".")[0]
        assert one(su, "SELECT current_setting('server_version_num')::int / 10000") == int(new_major)
        assert one(su, "SELECT extversion FROM pg_extension WHERE extname = 'auth_jwt'") == version
        functions = su.execute("SELECT p.oid::regprocedure::text, pg_get_functiondef(p.oid) FROM pg_proc p "
                               "JOIN pg_namespace n ON n.oid = p.pronamespace WHERE nspname = 'auth_jwt' ORDER BY 1").fetchall()
        notices = []
        su.add_notice_handler(lambda d: notices.append(d.message_primary))
        su.execute("ALTER EXTENSION auth_jwt UPDATE")
        assert any("already installed" in n for n in notices), notices
        assert su.execute("SELECT p.oid::regprocedure::text, pg_get_functiondef(p.oid) FROM pg_proc p "
                          "JOIN pg_namespace n ON n.oid = p.pronamespace WHERE nspname = 'auth_jwt' ORDER BY 1").fetchall() == functions
        assert su.execute("SELECT tgtype, tgenabled FROM pg_trigger WHERE tgname = 'auth_jwt_key_change' AND tgrelid = 'public.jwks'::regclass").fetchall() == [(29, "A")]

        # Tokens signed before the upgrade verify; RLS isolates the two users.
        assert one(su, "SELECT auth_jwt.jwt_verify(%s)->>'sub'", signed_before[1]) == "user1"
        app = connect(NEW_PORT, user="authenticator")
        for seed in (1, 2):
            as_request(app, signed_before[seed])
            assert titles(app) == [f"task of user{seed}"]
            app.execute("COMMIT")
        as_request(app, None)
        assert titles(app) == []
        app.execute("COMMIT")

        # The key-change trigger still reaches every backend.
        other = connect(NEW_PORT)
        assert one(other, "SELECT auth_jwt.jwt_verify(%s)->>'sub'", signed_before[1]) == "user1"
        su.execute("DELETE FROM jwks WHERE id = 'k1'")
        with pytest.raises(psycopg.Error, match="unable to find matching signing key"):
            other.execute("SELECT auth_jwt.jwt_verify(%s)", (signed_before[1],))
        assert one(other, "SELECT auth_jwt.jwt_verify(%s)->>'sub'", signed_before[2]) == "user2"
        su.execute("INSERT INTO jwks VALUES ('k3', %s, 'x', now(), NULL, 'EdDSA', 'Ed25519')", (jwk(3),))
        assert one(other, "SELECT auth_jwt.jwt_verify(%s)->>'sub'", token(3, kid="k3")) == "user3"
        for c in (su, app, other):
            c.close()
        ctl(NEW, new, "stop", NEW_PORT)
    finally:
        for bindir, data, port in ((OLD, old, OLD_PORT), (NEW, new, NEW_PORT)):
            subprocess.run(["runuser", "-u", "postgres", "--", f"{bindir}/pg_ctl", "-D", data, "-m", "immediate", "-w", "stop"],
                           capture_output=True)
        for d in (old, new, work):
            shutil.rmtree(d, ignore_errors=True)
