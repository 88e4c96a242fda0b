"""jwt_verify's jsonb is byte for byte what PostgreSQL's own jsonb_in makes of the payload; a
payload jsonb cannot hold, or a database that is not UTF-8, is refused rather than mangled.

The core writes jsonb's binary format directly (auth_jwt_core::jsonb); a mistake there would
not show as a wrong value in simple tests but as a corrupt datum that some operator reads
wrongly. So: many random claim sets, compared as binary images (record_image_eq, `*=` on a
one-column composite) and through the operators that walk the binary layout."""

import json
import random

import psycopg
import pytest
from conftest import ISS, JWKS_DDL, connect, mint, one, sqlstate_of

UUID = "112e81d8-d62d-49d6-8a62-7e59b4050b0d"

KEYS = ["a", "b", "ab", "name", "email", "zz", "roles", "é", "ключ", "a\"b", "x\\y", "", "k" * 40, "emoji😀"]
STRINGS = ["", "x", "user@example.com", "é", "日本語", "tab\tnew\nline", "quote\"back\\slash", "😀", "\u2028", "s" * 300]
INTS = [0, 1, -1, 9999, 10000, -10000, 123456789, 1700000000, 1796132762, 2**31, -(2**31) - 1, 2**53 + 1,
        10**12, 10**16, 2**63 - 1, -(2**63)]
# Not representable by the direct writer: the fallback through jsonb_in must agree as well.
INEXACT = ["1.5", "1.50", "-0.0", "1e3", "2E-7", "18446744073709551615", "123456789012345678901234567890", "0.1"]


def value(rng: random.Random, depth: int):
    kind = rng.choice(["str", "int", "int", "bool", "null", "arr", "obj"] if depth < 4 else ["str", "int", "bool", "null"])
    if kind == "str":
        return rng.choice(STRINGS)
    if kind == "int":
        return rng.choice(INTS)
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "null":
        return None
    if kind == "arr":
        return [value(rng, depth + 1) for _ in range(rng.choice([0, 1, 2, 5, 33, 70] if depth < 2 else [0, 1, 3]))]
    return obj(rng, depth + 1)


def obj(rng: random.Random, depth: int) -> dict:
    n = rng.choice([0, 1, 3, 10, 31, 32, 33, 65] if depth < 2 else [0, 1, 4])
    keys = set(rng.sample(KEYS, min(n, len(KEYS))))
    keys |= {f"k{rng.randrange(10**rng.randrange(1, 6))}" for _ in range(n - len(keys))}
    return {k: value(rng, depth) for k in keys}


def payloads():
    rng = random.Random(20261201)
    base = {"exp": 9999999999, "iss": ISS, "aud": ISS, "sub": "user1"}
    for i in range(120):
        claims = {**obj(rng, 1), **base}
        while len(json.dumps(claims)) > 60_000:  # one command-line argument for the minter
            claims = {**obj(rng, 1), **base}
        text = json.dumps(claims, ensure_ascii=rng.random() < 0.5)
        if i % 4 == 0:  # a number jsonb_in must write (fraction, beyond i64): the fallback path
            text = text[:-1] + f', "inexact": {rng.choice(INEXACT)}}}'
        yield text
    yield json.dumps({**base, "nested": {"deep": [[[[{"x": [1, {"y": None}]}]]]]}})
    deep = None
    for i in range(120):  # near the parser's depth limit (128), objects and arrays alternating
        deep = {"o": deep, "n": i} if i % 2 else [deep, -i, "x"]
    yield json.dumps({**base, "deep": deep})
    yield json.dumps({**base, "long": "é" * 30_000, "after": 1}, ensure_ascii=False)  # a 60 KB string
    yield json.dumps({**base, **{f"key{i:03}": i * 10000 for i in range(100)}})


def test_claims_are_the_same_jsonb_as_jsonb_in_makes(db):
    with connect(db) as c:
        c.execute("SET auth_jwt.max_token_size = '1MB'")
        c.execute("CREATE TYPE one_jsonb AS (j jsonb)")
        c.execute("CREATE TABLE p (n int, payload text, tok text)")
        rows = [(n, p, mint("token", "1", f"payload={p}")) for n, p in enumerate(payloads())]
        with c.cursor() as cur:
            cur.executemany("INSERT INTO p VALUES (%s, %s, %s)", rows)
        checks = c.execute("""
            SELECT n,
                   ROW(v)::one_jsonb *= ROW(j)::one_jsonb AS same_bytes,
                   v = j AND v::text = j::text AND v @> j AND j @> v AS same_value,
                   jsonb_hash_extended(v, 7) = jsonb_hash_extended(j, 7) AS same_hash,
                   (SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(v) k)
                     = (SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(j) k) AS same_keys,
                   (SELECT bool_and(v -> k = j -> k AND v ? k) FROM jsonb_object_keys(j) k) AS every_member,
                   jsonb_path_query_array(v, 'strict $.**') = jsonb_path_query_array(j, 'strict $.**') AS same_walk
              FROM (SELECT n, auth_jwt.jwt_verify(tok) v, payload::jsonb j FROM p) s
             ORDER BY n""").fetchall()
        assert len(checks) == len(rows)
        bad = [row for row in checks if not all(x is not False for x in row[1:])]
        assert not bad, bad[:5]
        # The direct writer, not only the fallback, was exercised (most payloads are exact).
        exact = [r for r in rows if "inexact" not in r[1]]
        assert len(exact) > 80


def test_a_number_jsonb_cannot_read_is_a_malformed_token_for_every_function(db):
    # 0e99999999999 is a float (zero) to the parser, with no digits after the point, but
    # numeric_in refuses the exponent: the token verified and jwt_verify raised 22003 (found by
    # red-team). It is now refused as malformed, by every function alike.
    with connect(db) as c:
        for number in ["0e99999999999", "0.0E+1073741823", "1e-99999999999999999999"]:
            t = mint("token", "1", f'payload={{"exp":9999999999,"iss":"{ISS}","aud":"{ISS}","uuid":"{UUID}","n":{number}}}')
            for fn in ["jwt_verify", "jwt_claim_uuid", "jwt_claim_sub"]:
                state, msg = sqlstate_of(c, f"SELECT auth_jwt.{fn}(%s)", t)
                assert (state, msg) == ("28000", "malformed token"), (number, fn, state, msg)
        ok = mint("token", "1", f'payload={{"exp":9999999999,"iss":"{ISS}","aud":"{ISS}","n":0e1073741822}}')
        assert one(c, "SELECT auth_jwt.jwt_verify(%s) -> 'n' = '0'::jsonb", ok)


def test_a_database_that_is_not_utf8_is_refused(db):
    # Claims are UTF-8 and reach SQL unconverted: in a LATIN1 database "é" came back as "Ã©" from
    # the direct writer and as "é" through jsonb_in (found by red-team). Such a database is
    # refused with a reason, for every route to a verification.
    t = mint("token", "1")
    for encoding in ["LATIN1", "SQL_ASCII"]:
        name = f"{db}_{encoding.lower()}"
        with connect("postgres") as admin:
            admin.execute(f"CREATE DATABASE {name} ENCODING '{encoding}' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0")
        try:
            with connect(name) as c:
                c.execute(JWKS_DDL)
                c.execute("INSERT INTO jwks VALUES ('k1', %s, '\"x\"', now(), NULL, 'EdDSA', 'Ed25519')", (mint("jwk", "1"),))
                c.execute("SET client_min_messages = warning")
                c.execute("CREATE EXTENSION auth_jwt")
                c.execute(f"SET auth_jwt.issuer = '{ISS}'")
                c.execute(f"SET auth_jwt.audience = '{ISS}'")
                for sql, args in [("SELECT auth_jwt.jwt_verify(%s)", (t,)), ("SELECT auth_jwt.jwt_claim_sub(%s)", (t,))]:
                    with pytest.raises(psycopg.Error) as e:
                        c.execute(sql, args)
                    assert e.value.sqlstate == "0A000", e.value
                    assert e.value.diag.message_primary == "auth_jwt needs a UTF-8 database"
                    assert encoding in e.value.diag.message_detail
                with pytest.raises(psycopg.Error) as e, c.transaction():
                    c.execute("SELECT set_config('auth_jwt.token', %s, true)", ("Bearer " + t,))
                    c.execute("SELECT auth_jwt.jwt_claims()")
                assert e.value.sqlstate == "0A000", e.value
        finally:
            with connect("postgres") as admin:
                admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
