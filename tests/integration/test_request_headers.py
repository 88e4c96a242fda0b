"""PostgREST's request.headers as the request's token source: the per-row memo recognises an
unchanged value without reading it (its size is the client's to choose), and still sees every
change: inside one statement, through savepoints and function SET clauses. The cost per row is
counted in instructions (callgrind), the same for a 1 MB value as for a typical one."""

import json
import os
import re
import shutil
import subprocess
import tempfile

import psycopg
import pytest

from conftest import PGBIN, connect, jwk, one, pg, token


def client_of(app_db):
    """The login role PostgREST uses."""
    return connect(app_db, user="authenticator")


def headers(tok=None, pad=0, **extra) -> str:
    h = {"host": "api.example.com", "accept": "application/json", **extra}
    if tok:
        h["authorization"] = f"Bearer {tok}"
    if pad:
        h["cookie"] = "x" * pad
    return json.dumps(h)


def request(c, value):
    c.execute("SELECT set_config('request.headers', %s, true)", (value,))


def test_a_change_inside_one_statement_is_seen(app_db):
    """Three values in one statement, the last as long as the first: a memo that recognised the
    value by where guc.c keeps it would take the third for the first (the allocator hands the
    freed block back)."""
    c = client_of(app_db)
    c.execute("BEGIN")
    c.execute("SET LOCAL ROLE authenticated")
    a, b, z = headers(token(1)), headers(), headers(token(2))
    assert len(a) == len(z)
    row = c.execute(
        "SELECT set_config('request.headers', %s, true), auth_jwt.jwt_claim_sub(), "
        "set_config('request.headers', %s, true), set_config('request.headers', %s, true), auth_jwt.jwt_claim_sub()",
        (a, b, z),
    ).fetchone()
    assert (row[1], row[4]) == ("user1", "user2")
    for value, sub in ((a, "user1"), (b, None), (z, "user2"), (a, "user1")):
        request(c, value)
        assert one(c, "SELECT auth_jwt.jwt_claim_sub()") == sub
    c.execute("ROLLBACK")


def test_savepoints_and_function_set_clauses(app_db):
    su = connect(app_db)
    t1 = token(1)  # one token: the savepoint check compares the restored value with it
    su.execute(
        "CREATE FUNCTION public.as_user2() RETURNS text LANGUAGE sql STABLE "
        f"SET request.headers = '{headers(token(2))}' AS $$ SELECT auth_jwt.jwt_claim_sub() $$"
    )
    su.execute("GRANT EXECUTE ON FUNCTION public.as_user2() TO authenticated")
    c = client_of(app_db)
    c.execute("BEGIN")
    c.execute("SET LOCAL ROLE authenticated")
    request(c, headers(t1))
    assert one(c, "SELECT auth_jwt.jwt_claim_sub()") == "user1"
    # The function's SET clause applies inside it, and its exit restores the caller's value.
    assert c.execute("SELECT auth_jwt.jwt_claim_sub(), public.as_user2(), auth_jwt.jwt_claim_sub()").fetchone() == (
        "user1", "user2", "user1")
    # A savepoint rolled back restores the value set before it.
    c.execute("SAVEPOINT s")
    request(c, headers(token(2)))
    assert one(c, "SELECT auth_jwt.jwt_claim_sub()") == "user2"
    c.execute("ROLLBACK TO SAVEPOINT s")
    assert one(c, "SELECT current_setting('request.headers')") == headers(t1)
    assert one(c, "SELECT auth_jwt.jwt_claim_sub()") == "user1"
    # A savepoint released keeps the value set inside it.
    c.execute("SAVEPOINT t")
    request(c, headers())
    assert one(c, "SELECT auth_jwt.jwt_claim_sub()") is None
    c.execute("RELEASE SAVEPOINT t")
    assert one(c, "SELECT auth_jwt.jwt_claim_sub()") is None
    # RESET goes back to the session's value: none here, so the request is anonymous.
    request(c, headers(token(2)))
    assert one(c, "SELECT auth_jwt.jwt_claim_sub()") == "user2"
    c.execute("RESET request.headers")
    assert one(c, "SELECT auth_jwt.jwt_claim_sub()") is None
    c.execute("ROLLBACK")
    # After the transaction the value is gone, and a session-scoped one is refused.
    assert one(c, "SELECT auth_jwt.jwt_claim_sub()") is None
    c.execute("SELECT set_config('request.headers', %s, false)", (headers(token(1)),))
    with pytest.raises(psycopg.Error, match="token was set for the session"):
        c.execute("SELECT auth_jwt.jwt_claim_sub()")


def test_a_spelling_created_before_the_library_loaded(app_db):
    """The placeholder exists before auth_jwt loads in this backend (any spelling): the hook goes on
    it at the first use, and every later change is seen."""
    c = client_of(app_db)
    c.execute("BEGIN")
    c.execute("SELECT set_config('Request.Headers', %s, true)", (headers(token(2)),))
    c.execute("SET LOCAL ROLE authenticated")
    assert one(c, "SELECT auth_jwt.jwt_claim_sub()") == "user2"
    request(c, headers(token(1)))
    assert one(c, "SELECT auth_jwt.jwt_claim_sub()") == "user1"
    c.execute("ROLLBACK")


# Per-row cost, in instructions: a single-user backend under callgrind counts what the policy
# function costs per row on its memo path (the first call of each statement, which parses the
# headers and verifies, runs outside the counted functions). Deterministic, unlike a timing.

ROWS = 2000


def callgrind_per_row(pad: int) -> dict[str, float]:
    """Instructions per row of jwt_claim_uuid() (an anonymous request) and jwt_claim_sub() (a token
    in request.headers), with `pad` bytes of cookie in the headers."""
    data = tempfile.mkdtemp(prefix="auth_jwt-cg-")
    shutil.chown(data, "postgres", "postgres")
    os.chmod(data, 0o700)
    try:
        pg(f"{PGBIN}/initdb", "-D", data, "-A", "trust", "-U", "postgres")
        setup = [
            'CREATE TABLE public.jwks (id text PRIMARY KEY, "publicKey" text NOT NULL)',
            f"INSERT INTO public.jwks VALUES ('k1', '{jwk(1)}')",
            "CREATE EXTENSION auth_jwt",
        ]
        run_single(data, setup)
        anonymous, with_token = headers(pad=pad), headers(token(1), pad=pad)
        statements = [
            "SET auth_jwt.issuer = 'https://app.example.com'",
            "SET auth_jwt.audience = 'https://app.example.com'",
            "BEGIN",
            f"SELECT set_config('request.headers', '{anonymous}', true)",
            "SELECT auth_jwt.jwt_claims()",
            # Per row, as in a policy (a WHERE clause without the row's columns would run once).
            f"SELECT count(*) FILTER (WHERE auth_jwt.jwt_claim_uuid() IS NULL) FROM generate_series(1, {ROWS})",
            f"SELECT set_config('request.headers', '{with_token}', true)",
            "SELECT auth_jwt.jwt_claims()",
            f"SELECT count(*) FILTER (WHERE auth_jwt.jwt_claim_sub() = 'user1') FROM generate_series(1, {ROWS})",
            "COMMIT",
        ]
        out = os.path.join(data, "callgrind.out")
        output = run_single(data, statements, valgrind=[
            "valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
            "--toggle-collect=auth_jwt_claim_uuid", "--toggle-collect=auth_jwt_claim_sub"])
        assert output.count(f'count = "{ROWS}"') == 2, output[-2000:]
        assert calls_of(out) == {"auth_jwt_claim_uuid": ROWS, "auth_jwt_claim_sub": ROWS}, "one call per row"
        annotated = subprocess.run(["callgrind_annotate", "--inclusive=yes", out], check=True, capture_output=True,
                                   text=True).stdout
        per_row = {}
        for fn in ("auth_jwt_claim_uuid", "auth_jwt_claim_sub"):
            m = re.search(r"^\s*([\d,]+)\s.*\b" + fn + r"\b", annotated, re.M)
            assert m, annotated[:3000]
            per_row[fn] = int(m.group(1).replace(",", "")) / ROWS
        return per_row
    finally:
        shutil.rmtree(data, ignore_errors=True)


def calls_of(out: str) -> dict[str, int]:
    """How often callgrind saw each of the counted functions called (names are given once per id)."""
    text = open(out).read()
    names = dict(re.findall(r"^c?fn=\((\d+)\) (\S+)", text, re.M))
    calls: dict[str, int] = {}
    for fid, n in re.findall(r"^cfn=\((\d+)\).*\ncalls=(\d+)", text, re.M):
        if names.get(fid, "").startswith("auth_jwt_claim_"):
            calls[names[fid]] = calls.get(names[fid], 0) + int(n)
    return calls


def run_single(data: str, statements: list[str], valgrind: list[str] | None = None) -> str:
    """Run statements in a single-user backend (one per line), as the postgres user."""
    script = "".join(s.replace("\n", " ") + "\n" for s in statements)
    r = subprocess.run(["runuser", "-u", "postgres", "--", *(valgrind or []), f"{PGBIN}/postgres", "--single", "-D", data,
                        "-c", "max_parallel_workers_per_gather=0", "postgres"],
                       input=script, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and "ERROR" not in r.stdout + r.stderr.replace("ERROR SUMMARY", ""), (r.stdout + r.stderr)[-3000:]
    return r.stdout


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="needs valgrind (callgrind)")
def test_per_row_cost_does_not_grow_with_the_headers():
    """Issue 26: 0.3.0 compared the whole value on every row (a 1 MB cookie cost ~1,000x a typical
    row). Now a row costs the same whatever the client sends."""
    typical, huge = callgrind_per_row(0), callgrind_per_row(1024 * 1024)
    for fn in typical:
        ratio = huge[fn] / typical[fn]
        assert ratio <= 1.2, f"{fn}: {typical[fn]:.0f} instructions per row with typical headers, {huge[fn]:.0f} with 1 MB"
