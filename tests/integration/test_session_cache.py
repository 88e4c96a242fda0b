"""auth_jwt.require_session keeps live sessions between transactions (issue 30), across backends:
a kept session costs no lookup; a sign-in and Better Auth's refresh leave every backend's kept
sessions alone; a sign-out, an earlier end or another user reaches every backend's next
transaction, also through logical-replication apply and on a partitioned table; what a
transaction read of its own writes is not kept past its rollback (of it, a savepoint, or a
prepared transaction)."""

import time

import psycopg
import pytest

from conftest import connect, one, subscribed, token, wait_for

ENDED = "session has ended"


@pytest.fixture
def sdb(app_db):
    with connect(app_db) as c:
        for sid, user in (("s1", "user1"), ("s2", "user2")):
            insert(c, sid, user)
        c.execute(f"ALTER DATABASE {app_db} SET auth_jwt.require_session = on")
    return app_db


INSERT = 'INSERT INTO session (id, "expiresAt", token, "updatedAt", "userId") VALUES (%s, now() + interval \'1 day\', %s, now(), %s)'


def insert(c, sid, user="user1", lasts="1 day"):
    c.execute(
        "INSERT INTO session (id, \"expiresAt\", token, \"updatedAt\", \"userId\") "
        "VALUES (%s, now() + %s::interval, %s, now(), %s)",
        (sid, lasts, f"secret-token-of-{sid}", user),
    )


def tok(sid, user="user1"):
    return token(int(user[-1]), claims=f'{{"sid":"{sid}"}}')


def verdict(c, sid, user="user1"):
    """One transaction's answer for the session's token: the sub, or the refusal's message."""
    try:
        return one(c, "SELECT auth_jwt.jwt_verify(%s)->>'sub'", tok(sid, user))
    except psycopg.Error as e:
        if not c.autocommit:
            c.rollback()
        return e.diag.message_primary


def lookups(c):
    return one(c, "SELECT session_lookups FROM auth_jwt.stats()")


def test_kept_sessions_cost_no_lookup_and_only_a_change_that_can_end_one_drops_them(sdb):
    a, b, writer = connect(sdb), connect(sdb), connect(sdb)
    assert (verdict(a, "s1"), verdict(a, "s2", "user2")) == ("user1", "user2")
    assert verdict(b, "s1") == "user1"
    before = (lookups(a), lookups(b))
    for _ in range(3):
        assert (verdict(a, "s1"), verdict(a, "s2", "user2"), verdict(b, "s1")) == ("user1", "user2", "user1")
    assert (lookups(a), lookups(b)) == before, "kept: no lookup in later transactions"
    # Better Auth's sign-in (INSERT) and its refresh (expiresAt later, updatedAt) reach nobody.
    insert(writer, "s3")
    writer.execute("UPDATE session SET \"expiresAt\" = \"expiresAt\" + interval '7 days', \"updatedAt\" = now() WHERE id = 's1'")
    writer.execute("UPDATE session SET \"ipAddress\" = '203.0.113.7', \"userAgent\" = 'x' WHERE id = 's2'")
    assert (verdict(a, "s1"), verdict(a, "s2", "user2"), verdict(b, "s1")) == ("user1", "user2", "user1")
    assert (lookups(a), lookups(b)) == before, "a sign-in and a refresh drop no kept session"
    # Sign-out (Better Auth deletes the row): every backend's next transaction; the sessions it
    # did not end stay kept (each backend forgets only the one the sign-out names).
    writer.execute("DELETE FROM session WHERE id = 's1'")
    assert (verdict(a, "s1"), verdict(b, "s1")) == (ENDED, ENDED)
    assert (lookups(a), lookups(b)) == (before[0] + 1, before[1] + 1)
    assert verdict(a, "s2", "user2") == "user2"
    assert lookups(a) == before[0] + 1, "the other session is still kept"
    # An earlier end, another user.
    writer.execute("UPDATE session SET \"expiresAt\" = now() - interval '1 second' WHERE id = 's2'")
    assert verdict(a, "s2", "user2") == "session has expired"
    assert verdict(b, "s3") == "user1"
    writer.execute("UPDATE session SET \"userId\" = 'user2' WHERE id = 's3'")
    assert verdict(b, "s3") == "session belongs to another user"
    # TRUNCATE.
    insert(writer, "s4")
    assert verdict(a, "s4") == "user1"
    writer.execute("TRUNCATE session")
    assert verdict(a, "s4") == ENDED


def test_a_bulk_revocation_reaches_every_backend(sdb):
    """Past 64 sessions ended in one transaction the relation's own invalidation goes instead of
    one per session; one sent in a savepoint that rolls back is gone with it, and the next end
    must still be announced."""
    a, writer = connect(sdb), connect(sdb, autocommit=False)
    sids = [f"bulk{i}" for i in range(80)]
    with connect(sdb) as su:
        for sid in sids:
            insert(su, sid)
    assert [verdict(a, sid) for sid in sids + ["s1"]] == ["user1"] * 81
    writer.execute("SAVEPOINT sp")
    writer.execute("DELETE FROM session WHERE id LIKE 'bulk%'")
    writer.execute("ROLLBACK TO SAVEPOINT sp")
    writer.execute("DELETE FROM session WHERE id = 's1'")
    writer.commit()
    assert verdict(a, "s1") == ENDED
    assert verdict(a, "bulk0") == "user1"
    writer.execute("DELETE FROM session WHERE id LIKE 'bulk%'")
    writer.commit()
    assert [verdict(a, sid) for sid in sids] == [ENDED] * 80


def test_a_kept_session_ends_by_the_clock(sdb):
    a, writer = connect(sdb), connect(sdb)
    insert(writer, "brief", lasts="1.5 seconds")
    assert verdict(a, "brief") == "user1"
    n = lookups(a)
    time.sleep(2)
    assert verdict(a, "brief") == "session has expired"
    assert lookups(a) == n + 1, "an ended kept session is looked up again"


@pytest.mark.parametrize("how", ["rollback", "savepoint", "prepared"])
def test_what_a_transaction_read_of_its_own_writes_is_not_kept_past_their_rollback(sdb, how):
    """A lookup reads the latest state, this transaction's own uncommitted rows included. A sign-in
    rolled back, and a refresh rolled back (the earlier end must hold), are not kept. A prepared
    transaction may yet be rolled back by another backend, which sends no invalidation."""
    a, other = connect(sdb, autocommit=False), connect(sdb)
    insert(other, "short", lasts="2 seconds")
    a.execute("BEGIN")
    if how == "savepoint":
        a.execute("SAVEPOINT sp")
    insert(a, "phantom")
    a.execute("UPDATE session SET \"expiresAt\" = now() + interval '1 day' WHERE id = 'short'")
    assert one(a, "SELECT auth_jwt.jwt_verify(%s)->>'sub'", tok("phantom")) == "user1"
    assert one(a, "SELECT auth_jwt.jwt_verify(%s)->>'sub'", tok("short")) == "user1"
    if how == "savepoint":
        a.execute("ROLLBACK TO SAVEPOINT sp")
        a.execute("COMMIT")
    elif how == "prepared":
        a.execute("PREPARE TRANSACTION 'auth_jwt_session_cache'")
        other.execute("ROLLBACK PREPARED 'auth_jwt_session_cache'")
    else:
        a.rollback()
    assert verdict(a, "phantom") == ENDED
    a.commit()
    time.sleep(2.2)
    assert verdict(a, "short") == "session has expired", "the rolled-back refresh is not kept"


def test_a_transaction_that_began_before_the_sign_out_sees_it(sdb):
    a, writer = connect(sdb, autocommit=False), connect(sdb)
    assert verdict(a, "s1") == "user1"
    a.commit()
    a.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
    assert one(a, "SELECT count(*) FROM session") == 2  # the snapshot is taken here
    writer.execute("DELETE FROM session WHERE id = 's1'")
    assert verdict(a, "s1") == ENDED
    a.rollback()


def test_sessions_kept_from_another_session_table_are_not_trusted(sdb):
    """While auth_jwt.session_table named another table, a sign-out in the first one invalidated
    nothing this backend watched: back on the first table, what it had kept from it must be gone."""
    a, writer = connect(sdb), connect(sdb)
    writer.execute("CREATE TABLE public.session_b (LIKE public.session INCLUDING ALL)")
    writer.execute("SET auth_jwt.session_table = 'public.session_b'")
    writer.execute("SELECT * FROM auth_jwt.watch_session_table()")
    assert verdict(a, "s1") == "user1"
    a.execute("SET auth_jwt.session_table = 'public.session_b'")
    assert verdict(a, "s1") == ENDED, "not in the other table"
    writer.execute("DELETE FROM session WHERE id = 's1'")
    a.execute("RESET auth_jwt.session_table")
    assert verdict(a, "s1") == ENDED


def test_a_partitioned_session_table(app_db):
    """Invalidations come from the partition a row is in; the trigger is cloned to each."""
    su = connect(app_db)
    su.execute("CREATE SCHEMA ba")
    su.execute('CREATE TABLE ba.session (id text, "expiresAt" timestamptz NOT NULL, token text, '
               '"updatedAt" timestamptz, "userId" text NOT NULL, PRIMARY KEY (id)) PARTITION BY HASH (id)')
    for i in range(2):
        su.execute(f"CREATE TABLE ba.session_{i} PARTITION OF ba.session FOR VALUES WITH (modulus 2, remainder {i})")
    su.execute(f"ALTER DATABASE {app_db} SET auth_jwt.session_table = 'ba.session'")
    su.execute(f"ALTER DATABASE {app_db} SET auth_jwt.require_session = on")
    su.execute("SET auth_jwt.session_table = 'ba.session'")
    watched = dict(su.execute("SELECT * FROM auth_jwt.watch_session_table()").fetchall())
    assert watched["ba.session"] == "trigger created", watched
    assert all(v == "watched through its partitioned parent's trigger" for k, v in watched.items() if k != "ba.session"), watched
    sids = [f"p{i}" for i in range(6)]
    for sid in sids:
        su.execute("INSERT INTO ba.session VALUES (%s, now() + interval '1 day', %s, now(), 'user1')", (sid, sid))
    a = connect(app_db)
    notices = []
    a.add_notice_handler(lambda d: notices.append(d.message_primary))
    assert [verdict(a, s) for s in sids] == ["user1"] * 6
    n = lookups(a)
    assert [verdict(a, s) for s in sids] == ["user1"] * 6
    assert lookups(a) == n
    for sid in sids:
        su.execute("DELETE FROM ba.session WHERE id = %s", (sid,))
        assert verdict(a, sid) == ENDED, sid
    assert not [m for m in notices if "not watched" in m], notices


@pytest.fixture
def replicated_sessions(sdb):
    """Better Auth's database publishes its session table; the app's database `sdb` subscribes."""
    ddl = ('CREATE TABLE session (id text PRIMARY KEY, "expiresAt" timestamptz NOT NULL, token text NOT NULL UNIQUE, '
           '"createdAt" timestamptz NOT NULL DEFAULT now(), "updatedAt" timestamptz NOT NULL, "ipAddress" text, '
           '"userAgent" text, "userId" text NOT NULL)')
    rows = [INSERT % (f"'{sid}'", f"'secret-{sid}'", f"'{user}'") for sid, user in (("s1", "user1"), ("s2", "user2"))]
    with subscribed(sdb, "session", ddl, rows, 2) as both:
        yield both


def test_logical_replication_apply_ends_kept_sessions(replicated_sessions, sdb):
    pub, s = replicated_sessions
    a = connect(sdb)
    assert (verdict(a, "s1"), verdict(a, "s2", "user2")) == ("user1", "user2")
    n = lookups(a)
    pub.execute("UPDATE session SET \"expiresAt\" = \"expiresAt\" + interval '7 days', \"updatedAt\" = now() WHERE id = 's1'")
    wait_for(s, "SELECT \"expiresAt\" > now() + interval '2 days' FROM session WHERE id = 's1'")
    assert (verdict(a, "s1"), lookups(a)) == ("user1", n), "a replicated refresh drops nothing"
    pub.execute("DELETE FROM session WHERE id = 's1'")
    wait_for(s, "SELECT count(*) = 0 FROM session WHERE id = 's1'")
    assert verdict(a, "s1") == ENDED
    pub.execute("UPDATE session SET \"expiresAt\" = now() - interval '1 second' WHERE id = 's2'")
    wait_for(s, "SELECT \"expiresAt\" < now() FROM session WHERE id = 's2'")
    assert verdict(a, "s2", "user2") == "session has expired"


SHAPES = {
    # The token's sid is the id in another spelling, which the lookup matches and the row's
    # printed id (what a sign-out names) is not: looked up every time, never kept.
    "uuid id, sid in upper case": (
        'CREATE TABLE ba.session (id uuid PRIMARY KEY, "expiresAt" timestamptz NOT NULL, "userId" text NOT NULL)',
        "INSERT INTO ba.session VALUES ('1b6c1a8e-4d3f-4a5b-9c7d-1e2f3a4b5c6d', now() + interval '1 day', 'user1')",
        "1B6C1A8E-4D3F-4A5B-9C7D-1E2F3A4B5C6D",
        "DELETE FROM ba.session",
        ENDED,
    ),
    "id with a nondeterministic collation": (
        "CREATE COLLATION ba.ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);"
        'CREATE TABLE ba.session (id text COLLATE ba.ci PRIMARY KEY, "expiresAt" timestamptz NOT NULL, "userId" text NOT NULL)',
        "INSERT INTO ba.session VALUES ('abc', now() + interval '1 day', 'user1')",
        "ABC",
        "DELETE FROM ba.session",
        ENDED,
    ),
    # A "userId" whose value can change with no row changing: nothing kept, and a WARNING.
    "userId of an enum type": (
        "CREATE TYPE ba.uid AS ENUM ('user1', 'user2');"
        'CREATE TABLE ba.session (id text PRIMARY KEY, "expiresAt" timestamptz NOT NULL, "userId" ba.uid NOT NULL)',
        "INSERT INTO ba.session VALUES ('s1', now() + interval '1 day', 'user1')",
        "s1",
        "ALTER TYPE ba.uid RENAME VALUE 'user1' TO 'userX'",
        "session belongs to another user",
    ),
    # PostgreSQL 18: a virtual generated column is computed when read, NULL in a trigger's tuples.
    "virtual generated userId": (
        'CREATE TABLE ba.session (id text PRIMARY KEY, "expiresAt" timestamptz NOT NULL, raw text NOT NULL, '
        '"userId" text GENERATED ALWAYS AS (raw) VIRTUAL)',
        "INSERT INTO ba.session (id, \"expiresAt\", raw) VALUES ('s1', now() + interval '1 day', 'user1')",
        "s1",
        "UPDATE ba.session SET raw = 'user2'",
        "session belongs to another user",
    ),
}


@pytest.mark.parametrize("shape", SHAPES)
def test_a_session_whose_row_can_change_unseen_is_never_kept(app_db, shape):
    """The first review of the session cache kept a session past its end through each of these."""
    ddl, row, sid, end, refusal = SHAPES[shape]
    su = connect(app_db)
    if "VIRTUAL" in ddl and one(su, "SHOW server_version_num") < "180000":
        pytest.skip("virtual generated columns are PostgreSQL 18's")
    su.execute("CREATE SCHEMA ba")
    su.execute(ddl)
    su.execute(row)
    su.execute(f"ALTER DATABASE {app_db} SET auth_jwt.session_table = 'ba.session'")
    su.execute(f"ALTER DATABASE {app_db} SET auth_jwt.require_session = on")
    su.execute("SET auth_jwt.session_table = 'ba.session'")
    su.execute("SELECT * FROM auth_jwt.watch_session_table()")
    a = connect(app_db)
    assert [verdict(a, sid) for _ in range(3)] == ["user1"] * 3
    su.execute(end)
    assert verdict(a, sid) == refusal
