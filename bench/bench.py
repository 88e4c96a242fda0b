"""auth_jwt benchmarks: run by bench/run against its own throwaway cluster (release build).
Measures everything in one run, prints ratios, and writes BENCHMARKS.md. Timings are noisy on
shared machines: each figure is the median of several runs, with min and max beside it."""

import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time

import psycopg

BENCH = os.environ["BENCH"]  # target/release/examples/bench
PGBIN = os.environ["PGBIN"]
# The same release build without frame pointers, in a second cluster (bench/run): the "before"
# of the stack-alignment finding (bench/FINDINGS.md).
NOFP_PORT = os.environ.get("NOFP_PORT")
NOFP_BENCH = os.environ.get("NOFP_BENCH")
NOFP_PGBIN = os.environ.get("NOFP_PGBIN")
CRYPTO_CHOICE = os.environ.get("CRYPTO_CHOICE")  # bench/crypto-choice, built by bench/run
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DB = "bench"
ISS = "https://app.example.com"
RUNS = int(os.environ.get("BENCH_RUNS", "7"))
QUICK = os.environ.get("BENCH_QUICK") == "1"  # smaller sizes, for a smoke run

N_COLD = 2_800 if QUICK else 14_000
N_ROWS = 100_000 if QUICK else 1_000_000
N_WARM = 20_000 if QUICK else 100_000
N_MEMORY = 50_000 if QUICK else 1_000_000
PGBENCH_SECONDS = 3 if QUICK else 10

results: list[tuple[str, str, list[float], str]] = []  # (section, label, samples, unit)
verdicts: list[tuple[str, str, str, bool | None]] = []  # (target, measured, goal, met)
notes: list[str] = []


def say(msg):
    print(msg, flush=True)


PORT = os.environ["PGPORT"]


def host(port):
    return os.environ["NOFP_HOST"] if port == NOFP_PORT else os.environ["PGHOST"]


def conn(**kw):
    port = kw.pop("port", PORT)
    return psycopg.connect(f"host={host(port)} port={port} user=postgres dbname={kw.pop('db', DB)}", autocommit=True, **kw)


def bench_out(*args, binary=None):
    return subprocess.run([binary or BENCH, *map(str, args)], check=True, capture_output=True, text=True).stdout


def copy_lines(c, sql, lines_iter):
    with c.cursor() as cur, cur.copy(sql) as cp:
        for line in lines_iter:
            cp.write(line)


def stream_tokens(c, table, n, users=1000, pad=0, keys=1, cols="n, u, tok, hdr, claims", alg=None):
    args = ["alg-tokens", str(n), alg] if alg else ["tokens", str(n), str(users), str(pad), str(keys)]
    proc = subprocess.Popen([BENCH, *args], stdout=subprocess.PIPE)
    with c.cursor() as cur, cur.copy(f"COPY {table} ({cols}) FROM STDIN") as cp:
        while chunk := proc.stdout.read(1 << 20):
            cp.write(chunk)
    assert proc.wait() == 0


def record(section, label, samples, unit="µs"):
    results.append((section, label, samples, unit))
    med = statistics.median(samples)
    say(f"  {label}: median {med:.2f} {unit} (min {min(samples):.2f}, max {max(samples):.2f})")
    return med


def verdict(target, measured, goal, met):
    verdicts.append((target, measured, goal, met))
    say(f"  => {target}: {measured} (target {goal}) {'MET' if met else 'MISSED'}")


def setup(port=PORT):
    with conn(db="postgres", port=port) as c:
        c.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        c.execute(f"CREATE DATABASE {DB}")
    with conn(port=port) as c:
        c.execute("SET client_min_messages = warning")
        for f in ("better_auth_schema.sql", "example_app.sql"):
            c.execute(open(os.path.join(ROOT, "sql", f)).read())
        copy_lines(c, 'COPY jwks (id, "publicKey", "privateKey", "createdAt") FROM STDIN',
                   (f"{l.split(chr(9))[0]}\t{l.split(chr(9))[1]}\tx\tnow\n" for l in bench_out("jwks", 1).splitlines()))
        c.execute(f"ALTER DATABASE {DB} SET auth_jwt.issuer = '{ISS}'")
        c.execute(f"ALTER DATABASE {DB} SET auth_jwt.audience = '{ISS}'")
        c.execute(f"ALTER DATABASE {DB} SET max_parallel_workers_per_gather = 0")
        c.execute("""INSERT INTO "user" (id, name, email, "emailVerified", uuid)
                     SELECT 'ba' || lpad(u::text, 30, '0'), 'User ' || u, 'user' || u || '@example.com', true,
                            ('00000000-0000-4000-8000-' || lpad(u::text, 12, '0'))::uuid
                       FROM generate_series(0, 999) u""")
        c.execute(f"""INSERT INTO tasks (user_id, title)
                      SELECT ('00000000-0000-4000-8000-' || lpad((i % 1000)::text, 12, '0'))::uuid, 'task ' || i
                        FROM generate_series(1, {N_ROWS}) i""")
        # Better Auth sessions: one live session per user, named by the tokens' sid, among 200k
        # sessions in all (the index of a busy app), for auth_jwt.require_session.
        c.execute("""INSERT INTO session (id, "expiresAt", token, "updatedAt", "userId")
                     SELECT CASE WHEN i < 1000 THEN 'se' || lpad(i::text, 30, '0') ELSE 'old' || i END,
                            now() + interval '7 days', md5(i::text) || i, now(), 'ba' || lpad((i % 1000)::text, 30, '0')
                       FROM generate_series(0, 199999) i""")
        c.execute("VACUUM ANALYZE session")
        c.execute("CREATE TABLE tok (n int PRIMARY KEY, u int, tok text, hdr text, claims text)")
        c.execute("VACUUM ANALYZE tasks")
        c.execute("GRANT SELECT ON tok TO authenticated")


PASSES = 7  # per round, on both sides of a paired comparison


def paired(raw_cmd, n_tokens, rounds):
    """Alternate the crate's own verification (`bench *raw_cmd(size)`: its best of PASSES passes
    of `size` operations) with the best of PASSES passes of cold jwt_verify, each over `size`
    never-seen tokens from table tok (rows 1..n_tokens), `rounds` times. Returns per-round µs per
    operation (raw, sql) and `size`. A shared machine's noise comes in bursts and only adds time,
    so the verdicts compare the best round of each; alternating short rounds lets both sides find
    the quiet moments, and both sides take the best of the same number of equally long passes (a
    best of 7 against a single pass would favour the reference on a noisy host)."""
    size = n_tokens // (rounds * PASSES)
    raw, best, base = [], [], []
    with conn() as c:
        c.execute("SELECT auth_jwt.jwt_verify(tok) FROM tok WHERE n = 0")  # keys loaded once
        for i in range(rounds):
            raw.append(float(bench_out(*raw_cmd(size)).split()[0]))
            f_min = float("inf")
            for p in range(PASSES):
                lo = 1 + (i * PASSES + p) * size
                hi = lo + size
                # The baseline is the scan and a call: octet_length reads only the length word,
                # while length() counts UTF-8 characters (~1.8 µs per 750-byte token here), which
                # would be subtracted from jwt_verify's figure and flatter it.
                t = time.perf_counter()
                c.execute("SELECT count(octet_length(tok)) FROM tok WHERE n >= %s AND n < %s", (lo, hi)).fetchone()
                base.append(time.perf_counter() - t)
                t = time.perf_counter()
                c.execute("SELECT count(auth_jwt.jwt_verify(tok)) FROM tok WHERE n >= %s AND n < %s", (lo, hi)).fetchone()
                f_min = min(f_min, time.perf_counter() - t)
            best.append(f_min)
        # Every baseline is the same work: its best, not each pass's own, is subtracted, or a
        # burst during a short baseline would make a pass look fast (even negative).
        sql = [(f - min(base)) * 1e6 / size for f in best]
        v = c.execute("SELECT verifications, cache_hits FROM auth_jwt.stats()").fetchone()
        assert v == (1 + rounds * PASSES * size, 0), v  # every call a full verification
    return raw, sql, size


def cold():
    say("\n1. Cold verification: distinct tokens, every call a full verification")
    with conn() as c:
        c.execute("TRUNCATE tok")
        stream_tokens(c, "tok", N_COLD + 1)
        c.execute("ANALYZE tok")
    rounds = 2 * RUNS
    raw, sql, size = paired(lambda size: ["raw", size], N_COLD, rounds)
    record("cold", f"raw verify_strict, {size} distinct signing inputs (per op, best of {PASSES} passes, {rounds} rounds)", raw)
    record("cold", f"auth_jwt.jwt_verify, {size} never-seen tokens (per call, best of {PASSES} passes, {rounds} rounds)", sql)
    ratio = min(sql) / min(raw)
    verdict("cold verify vs raw verify_strict", f"{ratio:.2f}x (best round of each: {min(sql):.1f} vs {min(raw):.1f} µs)", "≤ 1.25x", ratio <= 1.25)


def warm():
    say("\n2. Warm: the same token again, in a new statement and in a new transaction")
    with conn() as c:
        c.execute("""CREATE OR REPLACE FUNCTION bench_stmt(t text, n int, verify bool) RETURNS void LANGUAGE plpgsql AS $$
                     BEGIN
                       FOR i IN 1..n LOOP
                         IF verify THEN EXECUTE 'SELECT auth_jwt.jwt_verify($1)' USING t;
                         ELSE EXECUTE 'SELECT $1 IS NULL' USING t; END IF;
                       END LOOP;
                     END $$""")
        c.execute("""CREATE OR REPLACE PROCEDURE bench_txn(t text, n int, verify bool) LANGUAGE plpgsql AS $$
                     BEGIN
                       FOR i IN 1..n LOOP
                         IF verify THEN PERFORM auth_jwt.jwt_verify(t); ELSE PERFORM t IS NULL; END IF;
                         COMMIT;
                       END LOOP;
                     END $$""")
        tok = c.execute("SELECT tok FROM tok WHERE n = 1").fetchone()[0]
    out = {}
    for kind, sql in (("statement", "SELECT bench_stmt(%s, %s, %s)"), ("transaction", "CALL bench_txn(%s, %s, %s)")):
        samples = []
        for _ in range(RUNS):
            with conn() as c:
                c.execute("SELECT auth_jwt.jwt_verify(%s)", (tok,))
                t = time.perf_counter(); c.execute(sql, (tok, N_WARM, False)); b = time.perf_counter() - t
                t = time.perf_counter(); c.execute(sql, (tok, N_WARM, True)); f = time.perf_counter() - t
                samples.append((f - b) * 1e6 / N_WARM)
                assert c.execute("SELECT verifications FROM auth_jwt.stats()").fetchone()[0] == 1
        out[kind] = record("warm", f"same token, new {kind} (per call, loop overhead subtracted)", samples)
    worst = max(out.values())
    verdict("warm call", f"{out['statement']:.2f} µs / {out['transaction']:.2f} µs (statement / transaction)", "≤ 2 µs", worst <= 2.0)


SUPABASE = "(nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'uuid')::uuid"
AUTH_JWT = "auth_jwt.jwt_claim_uuid()"


def set_policy(c, expr):
    c.execute("DROP POLICY IF EXISTS tasks_select ON tasks")
    if expr is None:
        c.execute("ALTER TABLE tasks DISABLE ROW LEVEL SECURITY")
    else:
        c.execute("ALTER TABLE tasks ENABLE ROW LEVEL SECURITY")
        c.execute(f"CREATE POLICY tasks_select ON tasks FOR SELECT TO anon, authenticated USING (user_id = {expr})")


def timed_count(tok_row, query="SELECT count(*) FROM tasks"):
    samples = []
    tok, claims = tok_row
    for _ in range(RUNS):
        with conn() as c:
            c.execute("BEGIN")
            c.execute("SET LOCAL ROLE authenticated")
            c.execute("SELECT set_config('auth_jwt.token', %s, true), set_config('request.jwt.claims', %s, true)", (tok, claims))
            c.execute(query).fetchone()  # warm the buffers and the memo's first verification
            t = time.perf_counter()
            n = c.execute(query).fetchone()[0]
            samples.append((time.perf_counter() - t) * 1e3)
            c.execute("COMMIT")
    assert n == N_ROWS // 1000, n
    return samples


POSTGREST_HEADERS = {
    "host": "api.example.com", "user-agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
    "accept": "application/json", "accept-encoding": "gzip, deflate, br", "accept-language": "en-US,en;q=0.9",
    "origin": "https://app.example.com", "referer": "https://app.example.com/tasks", "x-forwarded-for": "203.0.113.7",
    "x-forwarded-proto": "https", "prefer": "count=exact",
}


def timed_headers(variants, expected):
    """count(*) under the policy with the request's token (or none) in PostgREST's request.headers,
    one sample list per headers value; the variants alternate within each run, side by side."""
    import json

    samples = [[] for _ in variants]
    for _ in range(RUNS):
        for i, headers in enumerate(variants):
            with conn() as c:
                c.execute("BEGIN")
                c.execute("SET LOCAL ROLE authenticated")
                c.execute("SELECT set_config('request.headers', %s, true)", (json.dumps(headers),))
                c.execute("SELECT count(*) FROM tasks").fetchone()
                t = time.perf_counter()
                n = c.execute("SELECT count(*) FROM tasks").fetchone()[0]
                samples[i].append((time.perf_counter() - t) * 1e3)
                c.execute("COMMIT")
            assert n == expected, (n, expected)
    return samples


HEADER_SIZES = (("typical", {}), ("32 KB", {"cookie": "x" * 32 * 1024}), ("1 MB", {"cookie": "x" * 1024 * 1024}))


def anonymous(ms_a, row):
    """Anonymous requests (PostgREST headers, no authorization header) against authenticated ones
    with the same headers: the absence of a token is remembered per statement like a token. The
    per-row check does not read the headers, so a client's 1 MB costs a row what 1 KB does."""
    say("\n3b. RLS per-row cost through request.headers: anonymous vs authenticated, typical, 32 KB and 1 MB headers")
    tok = row[0]
    per_row, ms = {}, {}
    for who, expected in (("authenticated", N_ROWS // 1000), ("anonymous", 0)):
        variants = [dict(POSTGREST_HEADERS, **extra) for _, extra in HEADER_SIZES]
        if who == "authenticated":
            variants = [dict(h, authorization=f"Bearer {tok}") for h in variants]
        for (size, _), headers, samples in zip(HEADER_SIZES, variants, timed_headers(variants, expected)):
            ms[who, size] = record("rls", f"{who}, {size} request.headers ({len(str(headers))} bytes)", samples, "ms")
            per_row.setdefault(size, {})[who] = (ms[who, size] - ms_a) * 1e6 / N_ROWS
    for size, cost in per_row.items():
        auth, anon = cost["authenticated"], cost["anonymous"]
        say(f"  per-row overhead, {size} headers: authenticated {auth:.0f} ns, anonymous {anon:.0f} ns")
        verdict(f"RLS per-row, anonymous vs authenticated ({size} headers)", f"{anon:.0f} vs {auth:.0f} ns per row",
                "anonymous ≤ authenticated + 10%", anon <= auth * 1.10 + 5)
    for who in ("authenticated", "anonymous"):
        ratio = ms[who, "1 MB"] / ms[who, "typical"]
        verdict(f"RLS per-row, 1 MB vs typical request.headers ({who})",
                f"{ms[who, '1 MB'] * 1e6 / N_ROWS:.0f} vs {ms[who, 'typical'] * 1e6 / N_ROWS:.0f} ns per row ({ratio:.2f}x)",
                "≤ 1.2x", ratio <= 1.2)
    notes.append("Per-row overhead through request.headers (ns/row over the constant filter): "
                 + ", ".join(f"{size}: authenticated {c['authenticated']:.0f}, anonymous {c['anonymous']:.0f}"
                             for size, c in per_row.items()) + ".")


def rls():
    say(f"\n3. RLS per-row cost: count(*) over {N_ROWS} rows of 1000 users, no index, as authenticated")
    with conn() as c:
        c.execute("DROP INDEX IF EXISTS tasks_user_id_idx")
        row = c.execute("SELECT tok, claims FROM tok WHERE u = 7 LIMIT 1").fetchone()
        c.execute("TRUNCATE tok")
        stream_tokens(c, "tok", 10, pad=2900)
        big = c.execute("SELECT tok, claims FROM tok WHERE u = 7").fetchone()
        notes.append(f"Token sizes: Better-Auth-sized {len(row[0])} bytes, large {len(big[0])} bytes.")
        uuid = "00000000-0000-4000-8000-000000000007"
        ms = {}
        set_policy(c, None)
        ms["a"] = record("rls", "(a) no RLS, constant filter", timed_count(row, f"SELECT count(*) FROM tasks WHERE user_id = '{uuid}'"), "ms")
        for key, label, expr, tokrow in (
            ("b", "(b) Supabase-style unverified helper, unwrapped", SUPABASE, row),
            ("c", "(c) auth_jwt.jwt_claim_uuid(), unwrapped", AUTH_JWT, row),
            ("c4k", "(c) auth_jwt.jwt_claim_uuid(), unwrapped, large token", AUTH_JWT, big),
            ("db", "(d) Supabase-style helper wrapped in (select ...)", f"(select {SUPABASE})", row),
            ("dc", "(d) auth_jwt.jwt_claim_uuid() wrapped in (select ...)", f"(select {AUTH_JWT})", row),
        ):
            set_policy(c, expr)
            ms[key] = record("rls", label, timed_count(tokrow), "ms")
        set_policy(c, AUTH_JWT)
        c.execute(f"ALTER DATABASE {DB} SET auth_jwt.require_session = on")
        ms["cs"] = record("rls", "(c) auth_jwt.jwt_claim_uuid(), unwrapped, auth_jwt.require_session = on", timed_count(row), "ms")
        c.execute(f"ALTER DATABASE {DB} RESET auth_jwt.require_session")
    anonymous(ms["a"], row)
    with conn() as c:
        c.execute("CREATE INDEX tasks_user_id_idx ON tasks (user_id)")
    per_row = {k: (v - ms["a"]) * 1e6 / N_ROWS for k, v in ms.items()}  # ns per row
    for k in ("b", "c", "c4k", "cs", "db", "dc"):
        say(f"  per-row overhead over (a): {k} {per_row[k]:.0f} ns")
    r = per_row["c"] / per_row["b"]
    verdict("RLS per-row overhead (c)/(b)", f"{r:.3f} ({per_row['c']:.0f} ns vs {per_row['b']:.0f} ns per row)", "≤ 0.15", r <= 0.15)
    r4 = per_row["c4k"] / per_row["c"] if per_row["c"] > 0 else float("inf")
    verdict("RLS per-row overhead, large vs Better-Auth-sized token", f"{r4:.2f}x ({per_row['c4k']:.0f} vs {per_row['c']:.0f} ns)", "≤ 1.2x", r4 <= 1.2)
    rs = per_row["cs"] / per_row["c"] if per_row["c"] > 0 else float("inf")
    verdict("RLS per-row overhead, require_session on vs off", f"{rs:.2f}x ({per_row['cs']:.0f} vs {per_row['c']:.0f} ns)",
            "unchanged (≤ 1.1x)", rs <= 1.1)
    wrapped = max(ms["db"], ms["dc"]) / ms["a"] - 1
    verdict("wrapped forms (d) vs (a)", f"{wrapped * 100:+.1f}% (slower of the two)", "within noise (≤ +5%)", wrapped <= 0.05)
    notes.append(
        f"Per-row overhead over (a), ns/row: Supabase-style {per_row['b']:.0f}, auth_jwt {per_row['c']:.0f}, "
        f"auth_jwt with the large token {per_row['c4k']:.0f}, auth_jwt with require_session on {per_row['cs']:.0f}, wrapped Supabase-style {per_row['db']:.0f}, wrapped auth_jwt {per_row['dc']:.0f}."
    )


DEPTHS = range(16)
CONTROL_DEPTH = 0
DEPTH_BLOCK = 50  # never-seen tokens per timed block
DEPTH_WARM = 5  # never-seen tokens verified untimed before each block
DEPTH_ROUNDS = 12 * RUNS  # rounds of one block per depth, per control slot and in one statement
DEPTH_FN = """CREATE OR REPLACE FUNCTION bench_depth(d int, lo int, hi int, verify bool) RETURNS int LANGUAGE plpgsql AS $$
DECLARE t text;
BEGIN
  IF d > 0 THEN RETURN bench_depth(d - 1, lo, hi, verify); END IF;
  FOR t IN SELECT tok FROM tok WHERE n >= lo AND n < hi ORDER BY n LOOP
    IF verify THEN PERFORM auth_jwt.jwt_verify(t); ELSE PERFORM octet_length(t); END IF;
  END LOOP;
  RETURN hi - lo;
END $$"""


def per_depth(port, binary):
    """Cold jwt_verify per call from PERFORM inside a PL/pgSQL function called d levels deep
    (d = 0: the PERFORM loop itself), the loop's own cost subtracted; in one SQL statement; and
    the build's raw verify_strict (`bench raw`, one pass over DEPTH_BLOCK signing inputs per
    round, after an untimed one), for the build in the cluster on `port`.

    One backend runs DEPTH_ROUNDS rounds; a round times one short block of DEPTH_BLOCK
    never-seen tokens at every depth, each followed by a block at one fixed depth (the control),
    and one in a statement, each block after DEPTH_WARM untimed calls at the same place. A figure
    is its best block less its best baseline block (the same loop without the verification).
    Noise from other tenants only adds time and comes in bursts: short blocks, interleaved, let
    every figure find the quiet moments, while a depth that is slow by construction (a misaligned
    spill) is slow in every block. The control's sixteen slots are equal by construction and
    measured the same way at the same moments: their spread is the method's own noise on this
    host. Tokens cycle through the table, whose size far exceeds the token cache, so every call
    is a full verification (checked). The two builds are measured one after the other:
    alternating their blocks made every figure 5-10 µs slower here (two backends and their
    buffers taking turns in the caches), which the untimed calls before each block did not
    absorb."""
    n = N_COLD
    with conn(port=port) as c:
        c.execute("TRUNCATE tok")
        stream_tokens(c, "tok", n + 1)
        c.execute("ANALYZE tok")
        c.execute(DEPTH_FN)
    c = conn(port=port)
    c.execute("SELECT auth_jwt.jwt_verify(tok) FROM tok WHERE n = 0")  # keys loaded
    nxt = 1

    def timed(sql, args):
        t = time.perf_counter()
        c.execute(sql, args).fetchone()
        return time.perf_counter() - t

    def take(k):  # the next k never-seen tokens: rows lo..lo+k-1
        nonlocal nxt
        lo = nxt
        nxt = lo + k if lo + k + DEPTH_BLOCK + DEPTH_WARM <= n + 1 else 1
        return lo, lo + k

    stmt = "SELECT count(auth_jwt.jwt_verify(tok)) FROM tok WHERE n >= %s AND n < %s"

    def block(d):  # (with verification, without), over the next never-seen tokens
        # Untimed first: after the client and the raw pass have run, a backend's first calls
        # refill the caches and branch predictors (about 0.5 ms per block here, 9 µs a call over
        # 50), which `bench raw` also leaves out with its untimed pass.
        warm = take(DEPTH_WARM)
        lo, hi = take(DEPTH_BLOCK)
        if d is None:  # one statement
            c.execute(stmt, warm).fetchone()
            return timed(stmt, (lo, hi)), timed("SELECT count(octet_length(tok)) FROM tok WHERE n >= %s AND n < %s", (lo, hi))
        c.execute("SELECT bench_depth(%s, %s, %s, true)", (d, *warm)).fetchone()
        return (timed("SELECT bench_depth(%s, %s, %s, true)", (d, lo, hi)),
                timed("SELECT bench_depth(%s, %s, %s, false)", (d, lo, hi)))

    slots = [x for d in DEPTHS for x in (d, CONTROL_DEPTH)] + [None]  # None: one statement
    best = [[float("inf")] * 2 for _ in slots]
    raw = float("inf")
    for _ in range(DEPTH_ROUNDS):
        # One pass per round, as each SQL figure gets one block: the same estimator both sides.
        raw = min(raw, float(bench_out("raw", DEPTH_BLOCK, 1, binary=binary).split()[0]))
        for i, d in enumerate(slots):
            best[i] = [min(x, y) for x, y in zip(best[i], block(d))]
    v = c.execute("SELECT cache_hits FROM auth_jwt.stats()").fetchone()
    assert v == (0,), v  # every call a full verification
    c.close()
    per_call = [(f - b) * 1e6 / DEPTH_BLOCK for f, b in best]
    return {d: per_call[2 * i] for i, d in enumerate(DEPTHS)}, per_call[1:-1:2], per_call[-1], raw


def call_depth():
    say("\n7. Call depth: cold jwt_verify from PL/pgSQL at depths 0-15, and raw verify_strict across 4 KiB of stack")
    builds = [("frame pointers", PORT, BENCH)]
    if NOFP_PORT:
        builds.append(("no frame pointers (before)", NOFP_PORT, NOFP_BENCH))
    summary = {}
    for label, port, binary in builds:
        lines = bench_out("sweep", 200, binary=binary).split("\n")
        sweep = [float(l.split()[1]) for l in lines if len(l.split()) == 2]
        raw_min, raw_med, raw_max = (float(x) for x in lines[-2].split())
        over = sum(1 for x in sweep if x > raw_med * 1.10)
        record("depth", f"{label}: raw verify_strict at 256 stack offsets (best of 9 each), over offsets", sweep)
        depths, control, statement, raw = per_depth(port, binary)
        vals = list(depths.values())
        record("depth", f"{label}: jwt_verify from PL/pgSQL at depths 0-15 (best of {DEPTH_ROUNDS} blocks per depth), over depths", vals)
        record("depth", f"{label}: jwt_verify from PL/pgSQL at depth {CONTROL_DEPTH}, 16 slots beside the depths' (the method's noise), over slots", control)
        record("depth", f"{label}: jwt_verify in one statement (best of {DEPTH_ROUNDS} blocks)", [statement])
        record("depth", f"{label}: raw verify_strict in the same rounds (best of {DEPTH_ROUNDS} blocks)", [raw])
        noise = max(control) / min(control)
        summary[label] = (raw_med, raw_max, over, min(vals), statistics.median(vals), max(vals), statement, noise, raw)
        notes.append(
            f"Call depth, {label}: raw verify_strict {raw_min:.1f}-{raw_max:.1f} µs over 256 stack offsets "
            f"(median {raw_med:.1f}; {over} offsets over 1.1x the median); jwt_verify per depth 0-15: "
            + ", ".join(f"{d}: {v:.1f}" for d, v in depths.items()) + f" µs ({max(vals) / min(vals):.2f}x worst/best); "
            f"depth {CONTROL_DEPTH} in the 16 control slots: {min(control):.1f}-{max(control):.1f} µs ({noise:.2f}x); "
            f"in one statement {statement:.1f} µs; raw verify_strict in the same rounds {raw:.1f} µs."
        )
    _, _, _, lo, med, hi, statement, noise, raw = summary["frame pointers"]
    # Sixteen figures that are equal by construction spread by `noise` on this host; a sweep no
    # wider than that (with a margin for two draws of the same statistic) is flat within noise.
    verdict("cold jwt_verify across call depths 0-15 (frame pointers)",
            f"{lo:.1f}-{hi:.1f} µs (worst/best {hi / lo:.2f}x; one depth in 16 slots: {noise:.2f}x)",
            "flat: ≤ 1.08x, or within noise (≤ one depth's spread + 0.03)", hi / lo <= 1.08 or hi / lo <= noise + 0.03)
    # The reference is timed in the same rounds, the same way (best short block): the sweep's
    # median comes from other minutes and moved by 15% between runs on this host.
    verdict("worst call depth vs raw verify_strict built the same way", f"{hi / raw:.2f}x ({hi:.1f} vs {raw:.1f} µs)", "≤ 1.1x", hi / raw <= 1.10)
    if NOFP_PORT:
        b = summary["no frame pointers (before)"]
        notes.append(
            f"Before/after, worst call depth {b[5]:.1f} µs without frame pointers, "
            f"{hi:.1f} µs with them; median depth {b[4]:.1f} vs {med:.1f} µs; "
            f"raw verify_strict worst offset {b[1]:.1f} vs {summary['frame pointers'][1]:.1f} µs."
        )


def pgbench(script, before_each=None, port=PORT, pgbin=PGBIN, runs=3, weights=None, writes=None, counts=None):
    """TPS of `script` per run; with `weights` ({"request": w, other script name: w}), the
    requests' own TPS in a mix with the scripts of `writes`, and into `counts` (if given) the
    transactions of each script, summed over the runs."""
    files = {"request": script, **(writes or {})}
    paths = {}
    for name, text in files.items():
        paths[name] = tempfile.mktemp(suffix=f"-{name}.sql")
        with open(paths[name], "w") as f:
            f.write(text)
    chosen = weights or {"request": 1}
    args = [a for name, w in chosen.items() for a in ("-f", f"{paths[name]}@{w}")]
    tps = []
    for _ in range(runs):
        if before_each:
            before_each()
        out = subprocess.run(
            [f"{pgbin}/pgbench", "-n", "-M", "prepared", "-c", "2", "-j", "2", "-T", str(PGBENCH_SECONDS), *args,
             "-h", host(port), "-p", port, "-U", "authenticator", DB],
            check=True, capture_output=True, text=True,
        ).stdout
        total = float(re.search(r"tps = ([\d.]+) \(without initial connection time\)", out).group(1))
        if weights:
            # "SQL script 1: <path>\n - weight: w (targets x% of total)\n - N transactions (y% of total, tps = t)"
            for name in chosen:
                m = re.search(re.escape(paths[name]) + r"\n - weight: \d+ .*\n - (\d+) transactions \([\d.]+% of total, tps = ([\d.]+)\)", out)
                if counts is not None:
                    counts[name] = counts.get(name, 0) + int(m.group(1))
                if name == "request":
                    total = float(m.group(2))
        tps.append(total)
    return tps


def throughput():
    say(f"\n4. PostgREST-style throughput (pgbench, 2 clients, prepared, {PGBENCH_SECONDS} s x 3)")
    n_fresh = 60_000 if QUICK else 250_000
    with conn() as c:
        c.execute("TRUNCATE tok")
        stream_tokens(c, "tok", n_fresh)
        c.execute("CREATE TABLE reuse AS SELECT DISTINCT ON (u) u, hdr, claims FROM tok ORDER BY u, n")
        c.execute("ALTER TABLE reuse ADD PRIMARY KEY (u)")
        c.execute("DROP SEQUENCE IF EXISTS fresh; CREATE SEQUENCE fresh")
        c.execute("GRANT SELECT ON reuse TO authenticated; GRANT SELECT ON tok TO authenticated; GRANT USAGE ON SEQUENCE fresh TO authenticated")
        c.execute("GRANT SELECT ON reuse, tok TO authenticator; GRANT USAGE ON SEQUENCE fresh TO authenticator")
        c.execute("VACUUM ANALYZE tok")
        c.execute("VACUUM ANALYZE reuse")
    head = "\\set u random(0, 999)\nBEGIN;\nSET LOCAL ROLE authenticated;\n"
    tail = "SELECT id, title FROM tasks LIMIT 20;\nEND;\n"
    scripts = {
        "unverified": head + "SELECT set_config('request.jwt.claims', claims, true) FROM reuse WHERE u = :u;\n" + tail,
        "reuse": head + "SELECT set_config('request.headers', hdr, true) FROM reuse WHERE u = :u;\n" + tail,
        "fresh": head + "SELECT set_config('request.headers', hdr, true) FROM tok WHERE n = (SELECT nextval('fresh'));\n" + tail,
    }
    tps = {}
    with conn() as c:
        set_policy(c, SUPABASE)
    tps["unverified"] = record("pgbench", "Supabase-style helper, claims from request.jwt.claims (TPS)", pgbench(scripts["unverified"]), "tps")
    with conn() as c:
        set_policy(c, AUTH_JWT)
    tps["reuse"] = record("pgbench", "auth_jwt, tokens reused across transactions (TPS)", pgbench(scripts["reuse"]), "tps")
    used = []

    def reset_fresh():
        with conn() as c:
            if used is not None and c.execute("SELECT is_called FROM fresh").fetchone()[0]:
                used.append(c.execute("SELECT last_value FROM fresh").fetchone()[0])
            c.execute("ALTER SEQUENCE fresh RESTART")

    tps["fresh"] = record("pgbench", "auth_jwt, a never-seen token every transaction (TPS)", pgbench(scripts["fresh"], reset_fresh), "tps")
    reset_fresh()
    # Sign-out in the database, off and on in turn (pgbench connects anew for each run, so the
    # database setting applies), with no session writes, then with Better Auth's writes beside the
    # requests: per 1,000 requests about 10 refreshes, 2 sign-ins and 1 sign-out (of a session no
    # request uses, so every token stays valid; each sign-out still makes every backend drop the
    # sessions it keeps).
    writes = {
        "refresh": "\\set u random(0, 999)\nUPDATE session SET \"expiresAt\" = \"expiresAt\" + interval '1 second', "
                   "\"updatedAt\" = now() WHERE id = 'se' || lpad(:u::text, 30, '0');\n",
        "sign_in": "INSERT INTO session (id, \"expiresAt\", token, \"updatedAt\", \"userId\") SELECT 'new' || n, "
                   "now() + interval '7 days', 'tok' || n, now(), 'ba' || lpad((n % 1000)::text, 30, '0') "
                   "FROM (SELECT nextval('signins') AS n) s;\n",
        "sign_out": "\\set r random(1000, 199999)\nDELETE FROM session WHERE id = 'old' || :r;\n",
    }
    with conn() as c:
        c.execute("DROP SEQUENCE IF EXISTS signins; CREATE SEQUENCE signins")
        c.execute("GRANT SELECT, INSERT, UPDATE, DELETE ON session TO authenticator; GRANT USAGE ON SEQUENCE signins TO authenticator")

    def session_setting(value):
        def apply():
            with conn() as c:
                c.execute(f"ALTER DATABASE {DB} SET auth_jwt.require_session = {value}")
        return apply

    def index_scans():
        with conn() as c:
            return c.execute("SELECT idx_scan FROM pg_stat_user_indexes WHERE indexrelid = 'session_pkey'::regclass").fetchone()[0]

    mix = {"": None, "_w": {"request": 1000, "refresh": 10, "sign_in": 2, "sign_out": 1}}
    for shape in ("reuse", "fresh"):
        for suffix, weights in mix.items():
            samples = {"off": [], "on": []}
            # Session index scans and transactions per script, to count the lookups: with the
            # setting off only the writes scan the index (refresh and sign-out, by id).
            scanned = {"off": [0, {}], "on": [0, {}]}
            for n in range(4):  # off and on interleaved, one run each per round, in turn first
                for value in (("off", "on") if n % 2 == 0 else ("on", "off")):
                    def before(value=value):
                        session_setting(value)()
                        if shape == "fresh":
                            reset_fresh()
                    scans, counts = index_scans(), {}
                    samples[value] += pgbench(scripts[shape], before, runs=1, weights=weights, writes=writes, counts=counts)
                    time.sleep(0.5)  # the backends' statistics, reported as they exit
                    scanned[value][0] += index_scans() - scans
                    for k, v in counts.items():
                        scanned[value][1][k] = scanned[value][1].get(k, 0) + v
                    if value == "on" and not weights:
                        assert index_scans() > scans, "the session index was never used"
            if weights:
                off_scans, off_txns = scanned["off"]
                on_scans, on_txns = scanned["on"]
                per_write = off_scans / max(1, off_txns["refresh"] + off_txns["sign_out"])
                lookups = max(0.0, on_scans - per_write * (on_txns["refresh"] + on_txns["sign_out"]))
                hit = 1 - lookups / on_txns["request"]
                record("pgbench", f"session cache hit rate, {shape} tokens, with Better Auth's session writes (%)", [100 * hit], "%")
                notes.append(
                    f"Session writes beside the {shape} requests, require_session on: {on_txns['request']} requests, "
                    f"{on_txns['refresh']} refreshes, {on_txns['sign_in']} sign-ins, {on_txns['sign_out']} sign-outs; "
                    f"about {lookups:.0f} session lookups (index scans {on_scans}, less {per_write:.2f} per refresh or "
                    f"sign-out as measured with the setting off): {100 * hit:.1f}% of requests found their session kept.")
            what = ("tokens reused" if shape == "reuse" else "a never-seen token every transaction") + (
                ", with Better Auth's session writes" if weights else "")
            tps[f"{shape}{suffix}_off"] = record("pgbench", f"auth_jwt, {what}, require_session = off (TPS)", samples["off"], "tps")
            tps[f"{shape}{suffix}_on"] = record("pgbench", f"auth_jwt, {what}, require_session = on (TPS)", samples["on"], "tps")
    session_setting("off")()
    reset_fresh()
    with conn() as c:
        c.execute(f"ALTER DATABASE {DB} RESET auth_jwt.require_session")
        c.execute("DELETE FROM session WHERE id LIKE 'new%'")
    if NOFP_PORT:
        before_after(scripts["fresh"].replace(tail, ""), tail, n_fresh)
    assert max(used) < n_fresh, f"ran out of fresh tokens ({max(used)} of {n_fresh})"
    notes.append(f"The never-seen-token run used at most {max(used)} of {n_fresh} pre-signed tokens per pgbench run.")
    r1 = tps["reuse"] / tps["unverified"]
    r2 = tps["fresh"] / tps["unverified"]
    verdict("pgbench TPS, tokens reused", f"{r1:.2f}x of unverified", "≥ 0.95x", r1 >= 0.95)
    verdict("pgbench TPS, new token every transaction", f"{r2:.2f}x of unverified", "≥ 0.75x", r2 >= 0.75)
    for k, what in (("reuse", "tokens reused"), ("fresh", "new token every transaction")):
        for suffix, writes_too in (("", ""), ("_w", ", with session writes")):
            r = tps[f"{k}{suffix}_on"] / tps[f"{k}{suffix}_off"]
            verdict(f"pgbench TPS with require_session on, {what}{writes_too}", f"{r:.2f}x of off", "≥ 0.95x", r >= 0.95)


# The request shapes of the before/after comparison. Each verifies at its own stack depth: the
# policy in a plain query, the policy under PostgREST's CTE and json_agg (its real read query),
# and PostgREST's db-pre-request hook, a PL/pgSQL function that reads the claim first.
PRE_REQUEST_FN = """CREATE OR REPLACE FUNCTION bench_pre_request() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  IF auth_jwt.jwt_claim_uuid() IS NULL THEN RAISE EXCEPTION 'no user'; END IF;
END $$"""
POSTGREST_READ = """WITH pgrst_source AS (SELECT "public"."tasks"."id", "public"."tasks"."title" FROM "public"."tasks" LIMIT 20 OFFSET 0)
  SELECT null::bigint AS total_result_set, pg_catalog.count(_postgrest_t) AS page_total,
         coalesce(json_agg(_postgrest_t), '[]') AS body,
         nullif(current_setting('response.headers', true), '') AS response_headers,
         nullif(current_setting('response.status', true), '') AS response_status
    FROM (SELECT * FROM pgrst_source) _postgrest_t;
END;
"""


def before_after(head, plain_tail, n_fresh):
    """#11's user-facing figure: a never-seen token every transaction, with and without frame
    pointers, for each request shape, the two builds' runs alternating so both see the same
    machine. A build without frame pointers is fast or slow depending on the depth a shape
    verifies at; the figure that matters is a shape's worst case."""
    with conn(port=NOFP_PORT) as c:
        c.execute("TRUNCATE tok")
        stream_tokens(c, "tok", n_fresh)
        c.execute("DROP SEQUENCE IF EXISTS fresh; CREATE SEQUENCE fresh")
        c.execute("GRANT SELECT ON tok TO authenticated, authenticator; GRANT USAGE ON SEQUENCE fresh TO authenticated, authenticator")
        c.execute("VACUUM ANALYZE tok")
        set_policy(c, AUTH_JWT)
    for port in (PORT, NOFP_PORT):
        with conn(port=port) as c:
            c.execute(PRE_REQUEST_FN)

    def restart(port):
        def reset():
            with conn(port=port) as c:
                c.execute("ALTER SEQUENCE fresh RESTART")
        return reset

    shapes = {
        "plain query": plain_tail,
        "PostgREST read query": POSTGREST_READ,
        "db-pre-request hook": "SELECT bench_pre_request();\n" + plain_tail,
    }
    runs = {(shape, build): [] for shape in shapes for build in ("after", "before")}
    for _ in range(3):
        for shape, tail in shapes.items():
            runs[shape, "after"] += pgbench(head + tail, restart(PORT), runs=1)
            runs[shape, "before"] += pgbench(head + tail, restart(NOFP_PORT), port=NOFP_PORT, pgbin=NOFP_PGBIN, runs=1)
    after, before = {}, {}
    for shape in shapes:
        after[shape] = record("pgbench", f"auth_jwt, a never-seen token every transaction, {shape} (TPS)", runs[shape, "after"], "tps")
        before[shape] = record("pgbench", f"auth_jwt without frame pointers (before), a never-seen token every transaction, {shape} (TPS)",
                               runs[shape, "before"], "tps")
    notes.append("PostgREST-style pgbench, a new token every transaction, without -> with frame pointers, same run: "
                 + "; ".join(f"{s} {before[s]:.0f} -> {after[s]:.0f} TPS ({after[s] / before[s]:.2f}x)" for s in shapes) + ".")
    worst_before, worst_after = min(before.values()), min(after.values())
    verdict("pgbench, new token every transaction: slowest request shape, frame pointers vs none",
            f"{worst_after / worst_before:.2f}x ({worst_after:.0f} vs {worst_before:.0f} TPS)", "> 1.0x", worst_after > worst_before)


def rss_kb(pid):
    """Private anonymous memory of the backend (RssAnon): what the backend itself allocated,
    without the shared buffers it touched (those are RssShmem)."""
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"RssAnon:\s+(\d+) kB", f.read()).group(1))


def memory():
    say(f"\n5. Memory: one backend verifying {N_MEMORY} distinct tokens (auth_jwt.cache_size = 1000)")
    with conn() as c:
        c.execute("TRUNCATE tok")
        c.execute("DROP TABLE IF EXISTS reuse")
        stream_tokens(c, "tok", N_MEMORY, cols="n, u, tok, hdr, claims")
        c.execute("VACUUM ANALYZE tok")
    points = []
    with conn() as c:
        pid = c.execute("SELECT pg_backend_pid()").fetchone()[0]
        c.execute("SELECT auth_jwt.jwt_verify(tok) FROM tok WHERE n = 0")
        start = rss_kb(pid)
        step = N_MEMORY // 10
        for lo in range(0, N_MEMORY, step):
            c.execute("SELECT count(auth_jwt.jwt_verify(tok)) FROM tok WHERE n >= %s AND n < %s", (lo, lo + step)).fetchone()
            points.append((lo + step, rss_kb(pid)))
        cached = c.execute("SELECT cached_tokens, verifications FROM auth_jwt.stats()").fetchone()
    growth = points[-1][1] - points[0][1]
    say("  RSS after N tokens: " + ", ".join(f"{n // 1000}k: {kb / 1024:.1f} MB" for n, kb in points))
    notes.append(
        f"Backend private memory (RssAnon) while verifying {N_MEMORY} distinct tokens: "
        + ", ".join(f"{n // 1000}k: {kb / 1024:.1f} MB" for n, kb in points)
        + f"; {cached[0]} tokens cached at the end (bound: auth_jwt.cache_size)."
    )
    results.append(("memory", f"RssAnon growth from {points[0][0] // 1000}k to {N_MEMORY // 1000}k tokens", [growth / 1024], "MB"))
    verdict(
        f"memory after {N_MEMORY // 1000}k distinct tokens",
        f"{points[-1][1] / 1024:.1f} MB private, {growth / 1024:+.1f} MB from the first tenth to the end; {cached[0]} cached",
        "bounded by auth_jwt.cache_size (no growth)",
        cached[0] <= 1000 and growth < 8 * 1024,
    )


ALGS = ["EdDSA", "ES256", "ES512", "RS256", "PS256"]


def algorithms():
    say("\n8. Every algorithm: cold jwt_verify against the crate's own verification, in the same run")
    ratios = {}
    for alg in ALGS:
        n = (1_400 if alg == "ES512" else 14_000) // (5 if QUICK else 1)
        with conn() as c:
            c.execute("TRUNCATE jwks")
            line = bench_out("alg-jwks", 0, alg).strip().split("\t")
            c.execute('INSERT INTO jwks (id, "publicKey", "privateKey", "createdAt", alg) VALUES (%s, %s, %s, now(), %s)',
                      (line[0], line[1], "x", line[2]))
            c.execute("TRUNCATE tok")
            stream_tokens(c, "tok", n + 1, alg=alg)
            c.execute("ANALYZE tok")
        rounds = 2 * RUNS
        raw, sql, size = paired(lambda size: ["alg-raw", size, alg], n, rounds)
        record("algorithms", f"{alg}: the crate's own verify, {size} signing inputs (per op, best of {PASSES} passes, {rounds} rounds)", raw)
        record("algorithms", f"{alg}: auth_jwt.jwt_verify, {size} never-seen tokens (per call, best of {PASSES} passes, {rounds} rounds)", sql)
        # Where the rest goes: the core's whole path (parse, verify, claims, jsonb) against the
        # crate's verify in one process, passes alternating (no SQL around either).
        pair = [tuple(float(x) for x in bench_out("alg-pair", 500, alg).split()) for _ in range(3)]
        core_over = min(c - r for r, c in pair)
        notes.append(f"{alg}: best rounds {min(sql):.1f} µs (jwt_verify) vs {min(raw):.1f} µs (the crate's verify); the core's whole "
                     f"path alone (parse, verify, claims, jsonb; bench alg-pair) adds {core_over:.1f} µs, the SQL call and its cache effects the rest.")
        ratios[alg] = (min(sql) / min(raw), min(sql), min(raw))
    for alg, (r, best_sql, best_raw) in ratios.items():
        verdict(f"cold {alg} vs the crate's own verify", f"{r:.2f}x (best round of each: {best_sql:.1f} vs {best_raw:.1f} µs)", "≤ 1.2x", r <= 1.2)
    with conn() as c:  # back to the Ed25519 key the other sections use
        c.execute("TRUNCATE jwks")
        copy_lines(c, 'COPY jwks (id, "publicKey", "privateKey", "createdAt") FROM STDIN',
                   (f"{l.split(chr(9))[0]}\t{l.split(chr(9))[1]}\tx\tnow\n" for l in bench_out("jwks", 1).splitlines()))


def crate_choice():
    """The candidates for ECDSA and RSA side by side, on the same keys and signatures."""
    if not CRYPTO_CHOICE:
        return
    say("\n9. Crate choice: ES256, ES512, RS256 and PS256 verification per crate (bench/crypto-choice)")
    out = subprocess.run([CRYPTO_CHOICE, "400" if QUICK else "2000"], check=True, capture_output=True, text=True).stdout
    best = {}
    for line in out.splitlines():
        alg, krate, *t = line.split()
        if t == ["unsupported"]:
            notes.append(f"Crate choice: {krate} does not implement {alg} (no P-521).")
            continue
        med = record("crate choice", f"{alg}: {krate} (per verification)", [float(x) for x in t])
        best.setdefault(alg, {})[krate] = med
    for alg, by in best.items():
        others = ", ".join(f"{k} {v:.1f} µs ({v / by['aws-lc-rs']:.2f}x)" for k, v in by.items() if k != "aws-lc-rs")
        notes.append(f"Crate choice, {alg}: aws-lc-rs {by['aws-lc-rs']:.1f} µs; {others}.")


def scale():
    say("\n6. Key-table size: cost per cold call with 1, 10 and 1000 keys")
    per = {}
    for keys in (1, 10, 1000):
        with conn() as c:
            c.execute("TRUNCATE jwks")
            copy_lines(c, 'COPY jwks (id, "publicKey", "privateKey", "createdAt") FROM STDIN',
                       (f"{l.split(chr(9))[0]}\t{l.split(chr(9))[1]}\tx\tnow\n" for l in bench_out("jwks", keys).splitlines()))
            c.execute("TRUNCATE tok")
            stream_tokens(c, "tok", 5000, keys=keys)
        samples = []
        for _ in range(RUNS):
            with conn() as c:
                c.execute("SELECT auth_jwt.jwt_verify(tok) FROM tok WHERE n = 0")
                t = time.perf_counter(); c.execute("SELECT count(octet_length(tok)) FROM tok WHERE n > 0").fetchone(); b = time.perf_counter() - t
                t = time.perf_counter(); c.execute("SELECT count(auth_jwt.jwt_verify(tok)) FROM tok WHERE n > 0").fetchone(); f = time.perf_counter() - t
                samples.append((f - b) * 1e6 / 4999)
        per[keys] = record("scale", f"{keys} key rows (per cold call)", samples)
    spread = max(per.values()) / min(per.values())
    verdict("cost per call with 1 / 10 / 1000 keys", " / ".join(f"{v:.1f}" for v in per.values()) + " µs", "flat (within 10%)", spread <= 1.10)


def machine():
    cpu = "unknown"
    try:
        cpu = re.search(r"model name\s*:\s*(.*)", open("/proc/cpuinfo").read()).group(1)
    except Exception:  # noqa: BLE001
        pass
    mem = int(re.search(r"MemTotal:\s+(\d+)", open("/proc/meminfo").read()).group(1)) // 1024 // 1024
    with conn() as c:
        pg = c.execute("SHOW server_version").fetchone()[0]
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    return [f"CPU: {cpu}, {os.cpu_count()} cores; memory {mem} GiB", f"OS: {platform.platform()}", f"PostgreSQL {pg}; {rustc}; auth_jwt release build (lto)"]


def write_report():
    lines = ["# auth_jwt benchmarks", "", "Reproduce with `bench/run` (release build, its own throwaway cluster, about 25 minutes on 2 cores).",
             "Every figure is from one run of that command on the machine below; each is the median of",
             f"{RUNS} runs (pgbench: 3) with min and max. Timings are noisy on shared machines; the ratios,",
             "measured side by side in the same run, are what the targets are about.", "", "## Machine", ""]
    lines += [f"- {m}" for m in machine()]
    lines += ["", "## Targets", "", "| target | measured | goal | |", "| --- | --- | --- | --- |"]
    for t, m, g, ok in verdicts:
        lines.append(f"| {t} | {m} | {g} | {'met' if ok else '**missed**'} |")
    lines += ["", "## Measurements", "", "| section | measurement | median | min | max |", "| --- | --- | --- | --- | --- |"]
    for sec, label, s, unit in results:
        lines.append(f"| {sec} | {label} | {statistics.median(s):.2f} {unit} | {min(s):.2f} | {max(s):.2f} |")
    # The sections of bench/jwks-shared and bench/citus, from their own runs.
    for section in ("JWKS_SHARED.md", "CITUS.md"):
        path = os.path.join(ROOT, "bench", section)
        if os.path.exists(path):
            lines += ["", open(path).read().strip()]
    lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    extra = os.path.join(ROOT, "bench", "FINDINGS.md")
    if os.path.exists(extra):
        lines += ["", open(extra).read().strip()]
    out = os.path.join(ROOT, "BENCHMARKS.md")
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")
    say(f"\nwrote {out}")


def main():
    only = os.environ.get("BENCH_ONLY")  # e.g. "call_depth algorithms": those sections, no report
    if only:
        setup()
        if NOFP_PORT:
            setup(NOFP_PORT)
        for name in only.split():
            globals()[name]()
        return
    core = [float(x) for x in bench_out("core", N_COLD).split()]
    record("cold", "auth_jwt_core::verify in-process: parse, JSON, key, verify_strict, claims (per token)", core)
    setup()
    if NOFP_PORT:
        setup(NOFP_PORT)
    cold()
    warm()
    rls()
    throughput()
    call_depth()
    algorithms()
    crate_choice()
    scale()
    memory()
    write_report()
    missed = [v for v in verdicts if v[3] is False]
    say(f"\n{len(verdicts) - len(missed)} of {len(verdicts)} targets met")


if __name__ == "__main__":
    sys.exit(main())
