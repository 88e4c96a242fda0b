"""Distributed figures: auth_jwt on a Citus coordinator and two workers (bench/citus starts them).
Writes bench/CITUS.md and puts it into BENCHMARKS.md as the section "Distributed (Citus)".

Compared side by side in one run, rounds interleaved: a multi-shard scan's cost per row under
auth_jwt's policy, the unverified helper's (claims from request.jwt.claims, carried to the workers
with SET LOCAL), and no policy; how many verifications each worker backend does per statement; and
PostgREST-style pgbench through the coordinator with auth_jwt and with the unverified helper."""

import os
import re
import statistics
import subprocess
import tempfile
import time

import psycopg
from psycopg import sql

from sections import write_section

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.environ["BENCH"]
PGBIN = os.environ["PGBIN"]
HOST = "127.0.0.1"
COORDINATOR = int(os.environ["CITUS_COORDINATOR"])
WORKERS = [int(p) for p in os.environ["CITUS_WORKERS"].split()]
DB = "bench"
ISS = "https://app.example.com"
QUICK = os.environ.get("BENCH_QUICK") == "1"
ROWS = 40_000 if QUICK else 400_000
ROUNDS = 3 if QUICK else 7
PGBENCH_SECONDS = 5 if QUICK else 15
U0 = "00000000-0000-4000-8000-000000000000"
HELPER = "(pg_catalog.current_setting('request.jwt.claims', true)::json ->> 'uuid')::uuid"

lines = []


def say(msg):
    print(msg, flush=True)


def conn(port=COORDINATOR, db=DB, **kw):
    return psycopg.connect(host=HOST, port=port, dbname=db, user=kw.pop("user", "postgres"), autocommit=True, **kw)


def psql_file(path):
    subprocess.run([f"{PGBIN}/psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", HOST, "-p", str(COORDINATOR),
                    "-U", "postgres", "-d", DB, "-f", path], check=True, capture_output=True)


def bench_out(*args):
    return subprocess.run([BENCH, *map(str, args)], check=True, capture_output=True, text=True).stdout


def setup():
    for port in [COORDINATOR, *WORKERS]:
        with conn(port, "postgres") as c:
            c.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
            c.execute(f"CREATE DATABASE {DB}")
            c.execute("DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'authenticator') THEN "
                      "CREATE ROLE authenticator LOGIN NOINHERIT; CREATE ROLE anon; CREATE ROLE authenticated; END IF; END $$")
        with conn(port) as c:
            c.execute("SET client_min_messages = warning")
            c.execute("CREATE EXTENSION citus")
    with conn() as c:
        c.execute("SET client_min_messages = warning")
        c.execute("SELECT citus_set_coordinator_host(%s, %s)", (HOST, COORDINATOR))
        for port in WORKERS:
            c.execute("SELECT citus_add_node(%s, %s)", (HOST, port))
        for setting, value in (("auth_jwt.issuer", ISS), ("auth_jwt.audience", ISS), ("max_parallel_workers_per_gather", "0")):
            c.execute(f"ALTER DATABASE {DB} SET {setting} = '{value}'")
        c.execute(open(os.path.join(ROOT, "sql", "better_auth_schema.sql")).read())
        for line in bench_out("jwks", 1).splitlines():
            kid, key = line.split("\t")[:2]
            c.execute("""INSERT INTO jwks (id, "publicKey", "privateKey", "createdAt") VALUES (%s, %s, 'x', now())""", (kid, key))
        c.execute(open(os.path.join(ROOT, "sql", "example_app.sql")).read())
    psql_file(os.path.join(ROOT, "sql", "example_citus.sql"))
    with conn() as c:
        c.execute("""INSERT INTO "user" (id, name, email, "emailVerified", uuid)
                     SELECT 'ba' || lpad(u::text, 30, '0'), 'User ' || u, 'user' || u || '@example.com', true,
                            ('00000000-0000-4000-8000-' || lpad(u::text, 12, '0'))::uuid
                       FROM generate_series(0, 999) u""")
        c.execute("""INSERT INTO tasks (user_id, title)
                     SELECT ('00000000-0000-4000-8000-' || lpad((i % 1000)::text, 12, '0'))::uuid, 'task ' || i
                       FROM generate_series(1, 20000) i""")
        # The unverified helper's twin of tasks, colocated with it.
        c.execute("CREATE TABLE tasks_helper (LIKE tasks INCLUDING DEFAULTS)")
        c.execute("ALTER TABLE tasks_helper ALTER COLUMN user_id DROP DEFAULT")
        c.execute("SELECT create_distributed_table('tasks_helper', 'user_id', colocate_with => 'tasks')")
        c.execute("INSERT INTO tasks_helper SELECT * FROM tasks")
        c.execute("ALTER TABLE tasks_helper ENABLE ROW LEVEL SECURITY")
        c.execute(f"CREATE POLICY own ON tasks_helper USING (user_id = {HELPER})")
        # A multi-shard scan: every row is the same user's, spread over every shard by id.
        for name, policy in (("items_open", None), ("items_helper", HELPER), ("items_auth", "auth_jwt.jwt_claim_uuid()")):
            c.execute(f"CREATE TABLE {name} (id bigint PRIMARY KEY, user_id uuid NOT NULL)")
            c.execute(f"SELECT create_distributed_table('{name}', 'id')")
            c.execute(f"INSERT INTO {name} SELECT i, '{U0}' FROM generate_series(1, {ROWS}) i")
            if policy:
                c.execute(f"ALTER TABLE {name} ENABLE ROW LEVEL SECURITY")
                c.execute(f"CREATE POLICY own ON {name} USING (user_id = {policy})")
        c.execute("GRANT SELECT ON tasks_helper, items_open, items_helper, items_auth TO authenticated")
        c.execute("CREATE TABLE tok (n int PRIMARY KEY, u int, tok text, hdr text, claims text)")
        with c.cursor() as cur, cur.copy("COPY tok (n, u, tok, hdr, claims) FROM STDIN") as cp:
            cp.write(bench_out("tokens", 5000 if QUICK else 60_000, 1000, 0, 1))
        c.execute("ALTER TABLE tok ADD COLUMN qtok text, ADD COLUMN qclaims text")
        c.execute("UPDATE tok SET qtok = quote_literal(tok), qclaims = quote_literal(claims)")
        c.execute("CREATE TABLE reuse AS SELECT DISTINCT ON (u) * FROM tok ORDER BY u, n")
        c.execute("ALTER TABLE reuse ADD PRIMARY KEY (u)")
        c.execute("CREATE SEQUENCE fresh")
        c.execute("GRANT SELECT ON tok, reuse TO authenticator, authenticated")
        c.execute("GRANT USAGE ON SEQUENCE fresh TO authenticator, authenticated")
        c.execute("VACUUM ANALYZE")
    for port in [COORDINATOR, *WORKERS]:
        with conn(port) as c:
            c.execute("SET citus.enable_ddl_propagation = off")
            c.execute("GRANT EXECUTE ON FUNCTION auth_jwt.stats() TO authenticated")
            c.execute("CREATE FUNCTION verifications_here() RETURNS bigint LANGUAGE sql VOLATILE "
                      "AS 'SELECT verifications FROM auth_jwt.stats()'")


def u0_claims(c):
    return c.execute("SELECT tok, claims FROM reuse WHERE u = 0").fetchone()


def per_row():
    say(f"\n1. A multi-shard scan of {ROWS} rows, one user's, over every shard: the policy's cost per row")
    c = conn(user="authenticator")
    tok, claims = u0_claims(c)
    c.execute("BEGIN")
    c.execute("SET LOCAL ROLE authenticated")
    c.execute("SET LOCAL citus.propagate_set_commands = 'local'")
    c.execute("SELECT set_config('auth_jwt.token', %s, true)", (tok,))
    c.execute(sql.SQL("SET LOCAL request.jwt.claims = {}").format(sql.Literal(claims)))
    times = {t: [] for t in ("items_open", "items_helper", "items_auth")}
    for t in times:  # warm: every worker backend has verified, and the caches are hot
        assert c.execute(f"SELECT count(*) FROM {t}").fetchone()[0] == ROWS, t
    for _ in range(ROUNDS):
        for t in times:
            start = time.perf_counter()
            c.execute(f"SELECT count(*) FROM {t}").fetchone()
            times[t].append(time.perf_counter() - start)
    c.execute("ROLLBACK")
    best = {t: min(v) for t, v in times.items()}
    med = {t: statistics.median(v) for t, v in times.items()}
    auth_ns = (best["items_auth"] - best["items_open"]) * 1e9 / ROWS
    helper_ns = (best["items_helper"] - best["items_open"]) * 1e9 / ROWS
    for t, label in (("items_open", "no policy"), ("items_helper", "unverified helper, claims carried with SET LOCAL"),
                     ("items_auth", "auth_jwt.jwt_claim_uuid()")):
        say(f"  {label}: best {best[t] * 1e3:.1f} ms, median {med[t] * 1e3:.1f} ms")
    lines.append(f"| multi-shard scan, {ROWS} rows over 8 shards on 2 workers: the policy's cost per row "
                 f"| auth_jwt {auth_ns:.0f} ns, unverified helper {helper_ns:.0f} ns ({auth_ns / helper_ns:.2f}x) "
                 f"| best of {ROUNDS} interleaved rounds: no policy {best['items_open'] * 1e3:.1f} ms, helper "
                 f"{best['items_helper'] * 1e3:.1f} ms, auth_jwt {best['items_auth'] * 1e3:.1f} ms |")


def verifications(pool):
    say(f"\n2. Verifications per worker backend per statement (a new token each statement; "
        f"citus.max_adaptive_executor_pool_size = {pool})")
    c = conn(user="authenticator")
    toks = [r[0] for r in c.execute("SELECT tok FROM tok WHERE u = 0 ORDER BY n LIMIT 4")]
    c.execute("BEGIN")
    c.execute("SET LOCAL ROLE authenticated")
    c.execute(f"SET LOCAL citus.max_adaptive_executor_pool_size = {pool}")
    deltas, before, shards = [], None, set()
    for tok in toks:
        c.execute("SELECT set_config('auth_jwt.token', %s, true)", (tok,))
        now = {pid: (v, n) for pid, v, n in c.execute(
            "SELECT pg_backend_pid(), max(verifications_here()), count(*) FROM items_auth GROUP BY 1")}
        if before is not None:
            deltas += [now[p][0] - before[p][0] for p in now.keys() & before.keys()]
        shards.add(len(now))
        before = now
    c.execute("ROLLBACK")
    say(f"  per backend and statement: {sorted(set(deltas))}; backends per statement: {sorted(shards)}")
    lines.append(f"| verifications per worker backend per statement, a new token each time, "
                 f"`citus.max_adaptive_executor_pool_size = {pool}` "
                 f"| at most {max(deltas)} (over {len(deltas)} backend-statements) "
                 f"| {max(shards)} worker backends ran the 8 shards of each statement, "
                 f"{8 // max(shards)} each |")


def pgbench(script, before_each=None):
    path = tempfile.mktemp(suffix=".sql")
    with open(path, "w") as f:
        f.write(script)
    out = []
    for _ in range(3):
        if before_each:
            before_each()
        res = subprocess.run([f"{PGBIN}/pgbench", "-n", "-M", "simple", "-c", "2", "-j", "2", "-T", str(PGBENCH_SECONDS),
                              "-f", path, "-h", HOST, "-p", str(COORDINATOR), "-U", "authenticator", DB],
                             check=True, capture_output=True, text=True).stdout
        out.append(float(re.search(r"tps = ([\d.]+) \(without initial connection time\)", res).group(1)))
    return out


def throughput():
    say(f"\n3. PostgREST-style pgbench through the coordinator (2 clients, {PGBENCH_SECONDS} s x 3, interleaved)")
    head = "\\set u random(0, 999)\nBEGIN;\nSET LOCAL ROLE authenticated;\n"
    scripts = {
        "helper": head + "SET LOCAL citus.propagate_set_commands = 'local';\n"
                         "SELECT qclaims FROM reuse WHERE u = :u \\gset\nSET LOCAL request.jwt.claims = :qclaims;\n"
                         "SELECT id, title FROM tasks_helper LIMIT 20;\nEND;\n",
        "reuse": head + "SELECT set_config('auth_jwt.token', tok, true) FROM reuse WHERE u = :u;\n"
                        "SELECT id, title FROM tasks LIMIT 20;\nEND;\n",
        "fresh": head + "SELECT set_config('auth_jwt.token', tok, true) FROM tok WHERE n = (SELECT nextval('fresh'));\n"
                        "SELECT id, title FROM tasks LIMIT 20;\nEND;\n",
    }

    def restart_fresh():
        with conn() as c:
            c.execute("ALTER SEQUENCE fresh RESTART")

    tps = {k: [] for k in scripts}
    for _ in range(1 if QUICK else 2):
        for k, s in scripts.items():
            tps[k] += pgbench(s, restart_fresh if k == "fresh" else None)
    med = {k: statistics.median(v) for k, v in tps.items()}
    for k, v in tps.items():
        say(f"  {k}: median {med[k]:.0f} tps (min {min(v):.0f}, max {max(v):.0f})")
    lines.append(f"| PostgREST-style pgbench through the coordinator (a multi-shard `SELECT ... FROM tasks LIMIT 20` "
                 f"under RLS), tokens reused / a new token every transaction "
                 f"| {med['reuse'] / med['helper']:.2f}x / {med['fresh'] / med['helper']:.2f}x the TPS of the unverified "
                 f"helper | medians of {len(tps['helper'])} runs: helper {med['helper']:.0f}, auth_jwt {med['reuse']:.0f} "
                 f"/ {med['fresh']:.0f} TPS |")


def machine():
    cpu = re.search(r"model name\s*:\s*(.*)", open("/proc/cpuinfo").read()).group(1)
    with conn() as c:
        pg = c.execute("SHOW server_version").fetchone()[0]
        citus = c.execute("SELECT extversion FROM pg_extension WHERE extname = 'citus'").fetchone()[0]
    return cpu, pg, citus


def write():
    cpu, pg, citus = machine()
    text = "\n".join([
        "## Distributed (Citus)",
        "",
        f"`bench/citus` (release build; a coordinator and two workers on one 2-core host, {cpu};",
        f"PostgreSQL {pg}, Citus {citus}, 8 shards). Side by side in one run; every node shares the",
        "same two cores, so absolute figures are far below a real cluster's, and the ratios are what to",
        "read.",
        "",
        "| measurement | result | detail |",
        "| --- | --- | --- |",
        *lines,
    ]) + "\n"
    write_section("CITUS.md", "Distributed (Citus)", text)
    say("\nwrote bench/CITUS.md and its section of BENCHMARKS.md")


def main():
    setup()
    per_row()
    verifications(1)
    verifications(16)
    throughput()
    write()


if __name__ == "__main__":
    main()
