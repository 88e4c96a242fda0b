"""Row-level security from the request's bearer token, as the `authenticated` role (never a
superuser), through sql/example_app.sql."""

import base64
import json

import psycopg
import pytest

from conftest import as_request, connect, grant_stats, one, token, user_uuid


def titles(conn):
    return sorted(r[0] for r in conn.execute("SELECT title FROM tasks").fetchall())


def client(app_db):
    return connect(app_db, user="authenticator")


@pytest.mark.parametrize("via", ["setting", "headers"])
def test_each_user_sees_only_own_tasks(app_db, via):
    c = client(app_db)
    for seed in (1, 2):
        as_request(c, token(seed), via=via)
        assert titles(c) == [f"task of user{seed}"]
        assert one(c, "SELECT auth_jwt.jwt_claim_uuid()::text") == user_uuid(seed)
        assert one(c, "SELECT auth_jwt.jwt_claim_sub()") == f"user{seed}"
        assert one(c, "SELECT auth_jwt.jwt_claims()->>'sub'") == f"user{seed}"
        c.execute("COMMIT")


def test_insert_update_delete_only_own_rows(app_db):
    c = client(app_db)
    t1 = token(1)
    as_request(c, t1)
    # Insert: default user_id is the caller; explicit own id works; another user's fails.
    c.execute("INSERT INTO tasks (title) VALUES ('new by default')")
    c.execute("INSERT INTO tasks (user_id, title) VALUES (%s, 'new explicit')", (user_uuid(1),))
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
        c.execute("INSERT INTO tasks (user_id, title) VALUES (%s, 'planted')", (user_uuid(2),))
    c.execute("ROLLBACK")
    as_request(c, t1)
    c.execute("INSERT INTO tasks (title) VALUES ('mine')")
    # Update: own rows only; moving a row to another user fails WITH CHECK.
    assert c.execute("UPDATE tasks SET completed = true").rowcount == 2
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
        c.execute("UPDATE tasks SET user_id = %s WHERE title = 'mine'", (user_uuid(2),))
    c.execute("ROLLBACK")
    as_request(c, t1)
    assert c.execute("UPDATE tasks SET title = 'hijacked' WHERE title = 'task of user2'").rowcount == 0
    assert c.execute("DELETE FROM tasks WHERE title = 'task of user2'").rowcount == 0
    assert c.execute("DELETE FROM tasks WHERE title = 'task of user1'").rowcount == 1
    c.execute("COMMIT")
    su = connect(app_db)
    assert sorted(r[0] for r in su.execute("SELECT title FROM tasks").fetchall()) == ["task of user2"]


@pytest.mark.parametrize("role", ["anon", "authenticated"])
def test_anonymous_sees_nothing(app_db, role):
    c = client(app_db)
    as_request(c, None, role=role)
    assert titles(c) == []
    assert one(c, "SELECT auth_jwt.jwt_claim_uuid()") is None
    assert one(c, "SELECT auth_jwt.jwt_claims()") is None
    c.execute("ROLLBACK")
    as_request(c, None, role="authenticated")
    with pytest.raises(psycopg.Error):
        c.execute("INSERT INTO tasks (user_id, title) VALUES (%s, 'x')", (user_uuid(1),))
    c.execute("ROLLBACK")


@pytest.mark.parametrize(
    "bad, message",
    [
        (dict(exp="-600"), "token has expired"),
        (dict(seed=2, kid="k1"), "invalid token signature"),
        (dict(iss="https://evil.example.com"), "invalid token claims"),
        (dict(aud="https://evil.example.com"), "invalid token claims"),
        (dict(kid="unknown"), "unable to find matching signing key"),
    ],
)
def test_bad_tokens_raise_inside_the_policy(app_db, bad, message):
    seed = bad.pop("seed", 1)
    c = client(app_db)
    as_request(c, token(seed, **bad))
    with pytest.raises(psycopg.Error) as e:
        c.execute("SELECT title FROM tasks")
    assert (e.value.sqlstate, e.value.diag.message_primary) == ("28000", message)
    c.execute("ROLLBACK")


def test_missing_uuid_claim(app_db):
    c = client(app_db)
    as_request(c, token(1, uuid="-"))
    with pytest.raises(psycopg.Error) as e:
        c.execute("SELECT title FROM tasks")
    assert (e.value.sqlstate, e.value.diag.message_primary) == ("28000", "token missing UUID (uuid claim)")
    c.execute("ROLLBACK")
    as_request(c, token(1, uuid="not-a-uuid"))
    with pytest.raises(psycopg.Error, match="token missing UUID"):
        c.execute("SELECT auth_jwt.jwt_claim_uuid()")
    c.execute("ROLLBACK")


def test_header_scheme_is_case_insensitive_and_name_configurable(app_db):
    c = client(app_db)
    c.execute("BEGIN")
    c.execute("SET LOCAL ROLE authenticated")
    c.execute("SELECT set_config('request.headers', %s, true)", (json.dumps({"authorization": f"bEaReR {token(1)}"}),))
    assert titles(c) == ["task of user1"]
    c.execute("ROLLBACK")
    su = connect(app_db)
    su.execute(f"ALTER ROLE authenticator IN DATABASE {app_db} SET auth_jwt.token_header = 'x-auth'")
    c = client(app_db)
    as_request(c, token(2), via="headers", header="x-auth")
    assert titles(c) == ["task of user2"]
    c.execute("ROLLBACK")
    as_request(c, token(2), via="headers", header="authorization")
    assert titles(c) == [], "the default header is no longer read"
    c.execute("ROLLBACK")


def test_setting_wins_over_headers(app_db):
    c = client(app_db)
    as_request(c, token(2), via="headers")
    c.execute("SELECT set_config('auth_jwt.token', %s, true)", (token(1),))
    assert titles(c) == ["task of user1"]
    c.execute("ROLLBACK")


def test_non_bearer_authorization_header_is_refused(app_db):
    c = client(app_db)
    c.execute("BEGIN")
    c.execute("SET LOCAL ROLE authenticated")
    c.execute("SELECT set_config('request.headers', %s, true)", (json.dumps({"authorization": "Basic dXNlcjpwYXNz"}),))
    with pytest.raises(psycopg.Error, match="malformed token"):
        c.execute("SELECT title FROM tasks")
    c.execute("ROLLBACK")


def test_pre_request_raises_pt401(app_db):
    c = client(app_db)
    as_request(c, token(1, exp="-600"), via="headers")
    with pytest.raises(psycopg.Error) as e:
        c.execute("SELECT auth_jwt.pre_request()")
    assert (e.value.sqlstate, e.value.diag.message_primary) == ("PT401", "token has expired")
    c.execute("ROLLBACK")
    as_request(c, None)
    c.execute("SELECT auth_jwt.pre_request()")  # anonymous: passes
    c.execute("ROLLBACK")


def test_request_jwt_claims_is_never_trusted(app_db):
    c = client(app_db)
    c.execute("BEGIN")
    c.execute("SET LOCAL ROLE authenticated")
    c.execute("SELECT set_config('request.jwt.claims', %s, true)", (json.dumps({"uuid": user_uuid(2), "sub": "user2"}),))
    c.execute("SELECT set_config('request.jwt.claim.uuid', %s, true)", (user_uuid(2),))
    assert titles(c) == []
    assert one(c, "SELECT auth_jwt.jwt_claim_uuid()") is None
    c.execute("ROLLBACK")


def test_own_function_or_schema_on_search_path_changes_nothing(app_db):
    su = connect(app_db)
    su.execute("CREATE SCHEMA evil AUTHORIZATION authenticated")
    c = client(app_db)
    as_request(c, token(1))
    c.execute(f"CREATE FUNCTION evil.jwt_claim_uuid() RETURNS uuid LANGUAGE sql AS $$ SELECT '{user_uuid(2)}'::uuid $$")
    c.execute("CREATE TABLE evil.jwks (id text, \"publicKey\" text)")
    c.execute("SET LOCAL search_path = evil, public")
    assert one(c, "SELECT jwt_claim_uuid()::text") == user_uuid(2), "their function exists..."
    assert titles(c) == ["task of user1"], "...but the policy calls auth_jwt.jwt_claim_uuid()"
    c.execute("ROLLBACK")


def test_one_verification_per_statement_over_a_large_table(app_db):
    su = connect(app_db)
    su.execute(
        "INSERT INTO tasks (user_id, title) SELECT CASE WHEN i %% 2 = 0 THEN %s::uuid ELSE %s::uuid END, 't' || i FROM generate_series(1, 100000) i",
        (user_uuid(1), user_uuid(2)),
    )
    su.execute("ANALYZE tasks")
    grant_stats(app_db, "authenticated")
    c = client(app_db)
    as_request(c, token(1))
    c.execute("SET LOCAL max_parallel_workers_per_gather = 0")
    c.execute("SET LOCAL enable_indexscan = off")
    c.execute("SET LOCAL enable_bitmapscan = off")
    stats = "SELECT verifications, cache_hits, request_token_reads FROM auth_jwt.stats()"
    before = c.execute(stats).fetchone()
    assert one(c, "SELECT count(*) FROM tasks") == 50001
    verifications, hits, reads = (a - b for a, b in zip(c.execute(stats).fetchone(), before))
    assert verifications == 1, "one signature verification for the whole statement"
    assert reads == 1, "the token setting is read once"
    assert hits >= 100000, "every further row is a cache hit (which re-checks expiry)"
    c.execute("ROLLBACK")


POSTGREST_HEADERS = {
    "host": "api.example.com", "user-agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
    "accept": "application/json", "accept-encoding": "gzip, deflate, br", "accept-language": "en-US,en;q=0.9",
    "origin": "https://app.example.com", "referer": "https://app.example.com/tasks", "x-forwarded-for": "203.0.113.7",
    "x-forwarded-proto": "https", "prefer": "count=exact",
}


@pytest.mark.parametrize("pad", [0, 32 * 1024])
def test_anonymous_requests_read_the_headers_once_per_statement(app_db, pad):
    """An anonymous request (PostgREST headers without an authorization header) must not re-parse
    request.headers on every row: the absence of a token is remembered like a verified token."""
    import json

    su = connect(app_db)
    su.execute(
        "INSERT INTO tasks (user_id, title) SELECT %s::uuid, 't' || i FROM generate_series(1, 50000) i",
        (user_uuid(1),),
    )
    su.execute("ANALYZE tasks")
    grant_stats(app_db, "anon, authenticated")
    c = client(app_db)
    headers = dict(POSTGREST_HEADERS, cookie="x" * pad) if pad else POSTGREST_HEADERS
    c.execute("BEGIN")
    c.execute("SET LOCAL ROLE anon")
    c.execute("SELECT set_config('request.headers', %s, true)", (json.dumps(headers),))
    c.execute("SET LOCAL enable_indexscan = off")
    c.execute("SET LOCAL enable_bitmapscan = off")
    c.execute("SET LOCAL max_parallel_workers_per_gather = 0")
    stats = "SELECT verifications, request_token_reads FROM auth_jwt.stats()"
    before = c.execute(stats).fetchone()
    assert one(c, "SELECT count(*) FROM tasks") == 0, "anonymous sees nothing"
    verifications, reads = (a - b for a, b in zip(c.execute(stats).fetchone(), before))
    assert (verifications, reads) == (0, 1), "headers parsed once for 50,000 rows"
    # A new headers value in the same transaction is read again, and its token honoured.
    c.execute("SET LOCAL ROLE authenticated")
    c.execute("SELECT set_config('request.headers', %s, true)", (json.dumps(dict(headers, authorization=f"Bearer {token(1)}")),))
    assert one(c, "SELECT count(*) FROM tasks") == 50001
    c.execute("ROLLBACK")


def test_two_spellings_of_the_token_header_are_refused(app_db):
    """Two members naming the same header case-insensitively: auth_jwt would verify one while
    `current_setting('request.headers')::json->>'authorization'` reads the other."""
    import json

    c = client(app_db)
    c.execute("BEGIN")
    c.execute("SET LOCAL ROLE authenticated")
    raw = '{"Authorization": "Bearer %s", "authorization": "Bearer %s"}' % (token(1), token(2))
    assert json.loads(raw)  # valid JSON: the member names differ
    c.execute("SELECT set_config('request.headers', %s, true)", (raw,))
    with pytest.raises(psycopg.Error) as e:
        c.execute("SELECT title FROM tasks")
    assert (e.value.sqlstate, e.value.diag.message_primary) == ("28000", "malformed token")
    assert "more than one member" in e.value.diag.message_detail
    c.execute("ROLLBACK")


def test_header_spelled_in_another_case_in_an_earlier_transaction(app_db):
    """Setting names are case-insensitive: set_config('Request.Headers', ...) creates the
    placeholder under that spelling; later PostgREST-style requests must still work."""
    import json

    c = client(app_db)
    for spelling in ("Request.Headers", "request.headers"):
        c.execute("BEGIN")
        c.execute("SET LOCAL ROLE authenticated")
        c.execute("SELECT set_config(%s, %s, true)", (spelling, json.dumps({"authorization": f"Bearer {token(1)}"})))
        assert titles(c) == ["task of user1"], spelling
        c.execute("COMMIT")


def test_index_on_the_policy_column_is_used(app_db):
    su = connect(app_db)
    su.execute(
        "INSERT INTO tasks (user_id, title) SELECT %s::uuid, 't' || i FROM generate_series(1, 20000) i",
        (user_uuid(2),),
    )
    su.execute("ANALYZE tasks")
    c = client(app_db)
    as_request(c, token(1))
    plan = "\n".join(r[0] for r in c.execute("EXPLAIN SELECT * FROM tasks").fetchall())
    assert "Index Cond: (user_id = auth_jwt.jwt_claim_uuid())" in plan, plan
    c.execute("ROLLBACK")


def test_expiry_is_rechecked_on_cache_hits(app_db):
    import time

    su = connect(app_db)
    su.execute(f"ALTER ROLE authenticator IN DATABASE {app_db} SET auth_jwt.leeway = 0")
    c = client(app_db)
    tok = token(1, exp="+5")  # long enough to be verified first on a busy machine
    exp = json.loads(base64.urlsafe_b64decode(tok.split(".")[1] + "=="))["exp"]
    as_request(c, tok)
    assert titles(c) == ["task of user1"]
    time.sleep(max(0.0, exp - time.time()) + 1.1)
    with pytest.raises(psycopg.Error, match="token has expired"):
        titles(c)
    c.execute("ROLLBACK")
