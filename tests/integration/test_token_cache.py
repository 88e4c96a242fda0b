"""The per-backend token cache: bounded by auth_jwt.cache_size, one eviction per insert (CLOCK),
entries in use kept, and what an entry serves is the same whichever function filled it."""

import psycopg
import pytest
from conftest import connect, one, token


def counts(conn):
    return conn.execute("SELECT verifications, cache_hits, cached_tokens FROM auth_jwt.stats()").fetchone()


def test_a_full_cache_evicts_one_entry_per_insert_and_keeps_the_one_in_use(db):
    c = connect(db)
    c.execute("SET auth_jwt.cache_size = 10")
    toks = [token(1, claims=f'{{"jti":"t{i}"}}') for i in range(16)]
    for t in toks[:10]:
        one(c, "SELECT auth_jwt.jwt_verify(%s) IS NOT NULL", t)
    assert counts(c)[2] == 10
    one(c, "SELECT auth_jwt.jwt_verify(%s) IS NOT NULL", toks[0])  # in use: a hit
    c.execute("SELECT auth_jwt.stats_reset()")
    # One new token into a full cache: exactly one entry goes (not a batch of them).
    one(c, "SELECT auth_jwt.jwt_verify(%s) IS NOT NULL", toks[10])
    assert counts(c) == (1, 0, 10)
    for t in toks[11:]:
        one(c, "SELECT auth_jwt.jwt_verify(%s) IS NOT NULL", t)
    assert counts(c) == (6, 0, 10)
    # The token used since it was cached survived five evictions; an unused one did not.
    one(c, "SELECT auth_jwt.jwt_verify(%s) IS NOT NULL", toks[0])
    assert counts(c) == (6, 1, 10)
    one(c, "SELECT auth_jwt.jwt_verify(%s) IS NOT NULL", toks[1])
    assert counts(c) == (7, 1, 10)


def test_a_lowered_cache_size_takes_effect_at_the_next_insert(db):
    c = connect(db)
    for i in range(8):
        one(c, "SELECT auth_jwt.jwt_verify(%s) IS NOT NULL", token(1, claims=f'{{"jti":"a{i}"}}'))
    assert counts(c)[2] == 8
    c.execute("SET auth_jwt.cache_size = 3")
    one(c, "SELECT auth_jwt.jwt_verify(%s) IS NOT NULL", token(1, claims='{"jti":"b"}'))
    assert counts(c)[2] <= 3
    c.execute("SET auth_jwt.cache_size = 0")
    c.execute("SELECT auth_jwt.stats_reset()")
    t = token(1, claims='{"jti":"c"}')
    one(c, "SELECT auth_jwt.jwt_verify(%s) IS NOT NULL", t)
    one(c, "SELECT auth_jwt.jwt_verify(%s) IS NOT NULL", t)
    assert counts(c) == (2, 0, 0), "cache_size 0: nothing kept, every call verifies"


def test_an_entry_filled_by_the_uuid_function_serves_the_same_claims(db):
    # jwt_claim_uuid(text) caches the token without building its jsonb; jwt_verify then builds
    # it from the payload. It must be exactly what a first jwt_verify returns.
    c = connect(db)
    t = token(1, claims='{"jti":"u"}')
    first = one(c, "SELECT auth_jwt.jwt_claim_uuid(%s)::text", t)
    c.execute("SELECT auth_jwt.stats_reset()")
    claims = one(c, "SELECT auth_jwt.jwt_verify(%s)::text", t)
    sub = one(c, "SELECT auth_jwt.jwt_claim_sub(%s)", t)
    assert counts(c)[:2] == (0, 2), "both served from the entry the uuid call made"
    fresh = connect(db)
    assert one(fresh, "SELECT auth_jwt.jwt_verify(%s)::text", t) == claims
    assert one(fresh, "SELECT auth_jwt.jwt_claim_uuid(%s)::text", t) == first
    assert sub == "user1"


def test_an_error_while_building_an_entrys_jsonb_leaves_the_entry_whole(db):
    # An entry filled by jwt_claim_uuid() keeps the payload text and builds the jsonb when first
    # asked for. A payload with a fraction goes through jsonb_in, which can raise (here: the stack
    # depth limit, 120 nested arrays called from deep PL/pgSQL). The entry must still serve the
    # same token afterwards, not a mangled payload.
    c = connect(db)
    t = token(1, claims='{"f":1.5}', nest="120")
    c.execute("SET max_stack_depth = '100kB'")
    c.execute("""CREATE FUNCTION deep(n int, t text, v bool) RETURNS jsonb LANGUAGE plpgsql AS $$
                 BEGIN IF n > 0 THEN RETURN deep(n - 1, t, v); END IF;
                 IF v THEN RETURN auth_jwt.jwt_verify(t); END IF; RETURN NULL; END $$""")
    # The deepest call PL/pgSQL itself can make under this limit.
    n = 0
    while True:
        try:
            c.execute("SELECT deep(%s, %s, false)", (n + 1, t))
            n += 1
        except psycopg.Error as e:
            assert e.sqlstate == "54001", e
            break
    assert one(c, "SELECT auth_jwt.jwt_claim_uuid(%s) IS NOT NULL", t)  # cached, jsonb not built
    with pytest.raises(psycopg.Error) as e:
        c.execute("SELECT deep(%s, %s, true)", (n, t))
    assert e.value.sqlstate == "54001", e.value
    # The same token, from a shallow call: the claims as signed, served from the cache.
    assert one(c, "SELECT auth_jwt.jwt_verify(%s) ->> 'f'", t) == "1.5"
    assert counts(c)[1] >= 1, "served from the cached entry"
