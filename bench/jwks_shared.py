"""Keys from a JWKS URL, shared by the server or fetched per backend (bench/jwks-shared starts a
cluster preloading auth_jwt and one that does not). Writes bench/JWKS_SHARED.md and puts it into
BENCHMARKS.md as the section "Keys from a JWKS URL, shared by the server".

Side by side in one run, rounds interleaved: the first verification in a new connection (with
preload and a warm shared document; without preload, where it fetches) against a verification in
a warm backend, all of never-seen tokens; the requests 100 busy connections make to the endpoint;
and pgbench with -C (a new connection per transaction) with keys from the URL, with and without
preload, and with keys from the table for reference."""

import json
import os
import re
import statistics
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg

from sections import write_section

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.environ["BENCH"]
PGBIN = os.environ["PGBIN"]
HOST = "127.0.0.1"
PRELOAD, PLAIN = int(os.environ["PRELOAD_PORT"]), int(os.environ["PLAIN_PORT"])
DB = "bench"
ISS = "https://app.example.com"
QUICK = os.environ.get("BENCH_QUICK") == "1"
ROUNDS = 3 if QUICK else 7
PER_ROUND = 10 if QUICK else 40
BUSY_SECONDS = 6 if QUICK else 20
PGBENCH_SECONDS = 3 if QUICK else 10

lines = []


def say(msg):
    print(msg, flush=True)


class Endpoint:
    """Better Auth's /api/auth/jwks on loopback, counting requests."""

    def __init__(self, body):
        self.requests = 0
        self.lock = threading.Lock()
        ep = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def do_GET(self):  # noqa: N802 - http.server's name
                with ep.lock:
                    ep.requests += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer((HOST, 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://{HOST}:{self.server.server_address[1]}/api/auth/jwks"

    def count(self):
        with self.lock:
            return self.requests


def conn(port, db=DB):
    return psycopg.connect(host=HOST, port=port, dbname=db, user="postgres", autocommit=True)


def tokens(n):
    out = subprocess.run([BENCH, "tokens", str(n), "1000"], check=True, capture_output=True, text=True).stdout
    return [line.split("\t")[2] for line in out.splitlines()]


def setup(port, url):
    with conn(port, "postgres") as c:
        for db in (DB, "bench_table"):
            c.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
            c.execute(f"CREATE DATABASE {db}")
    for db in (DB, "bench_table"):
        with conn(port, db) as c:
            c.execute("SET client_min_messages = warning")
            c.execute("CREATE EXTENSION auth_jwt")
            c.execute(f"ALTER DATABASE {db} SET auth_jwt.issuer = '{ISS}'")
            c.execute(f"ALTER DATABASE {db} SET auth_jwt.audience = '{ISS}'")
    with conn(port) as c:
        c.execute(f"ALTER DATABASE {DB} SET auth_jwt.jwks_url = '{url}'")
    kid, jwk = subprocess.run([BENCH, "jwks", "1"], check=True, capture_output=True, text=True).stdout.split("\t")
    with conn(port, "bench_table") as c:
        c.execute(open(os.path.join(ROOT, "sql", "better_auth_schema.sql")).read())
        c.execute('INSERT INTO jwks (id, "publicKey", "privateKey", "createdAt") VALUES (%s, %s, %s, now())', (kid, jwk.strip(), "x"))
        c.execute("SELECT auth_jwt.watch_key_table()")


def timed(c, tok):
    t = time.perf_counter()
    c.execute("SELECT auth_jwt.jwt_verify(%s)", (tok,))
    return (time.perf_counter() - t) * 1e6


def first_verification(port, tok, warm_up):
    """A new connection's first verification (µs). With `warm_up`, two statements before it take
    out what any new backend pays on its first use of a statement shape and a type: the same
    statement with a malformed token (refused before any key is looked at: catalog lookups, the
    function's address, first-touch page faults) and a jsonb output. What remains is keys and
    verification."""
    with conn(port) as c:
        if warm_up:
            try:
                c.execute("SELECT auth_jwt.jwt_verify(%s)", ("not.a.token",))
            except psycopg.errors.InvalidAuthorizationSpecification:
                pass
            c.execute("SELECT '{}'::jsonb")
        return timed(c, tok)


def row(measurement, result, detail):
    lines.append(f"| {measurement} | {result} | {detail} |")
    say(f"  {measurement}: {result} ({detail})")


def new_connections(toks):
    say(f"\n1. the first verification in a new connection ({ROUNDS} rounds of {PER_ROUND} connections per shape, interleaved)")
    shapes = ["warm backend", "preload, after warm-up", "preload, first statement", "per backend, after warm-up", "per backend, first statement"]
    medians = {s: [] for s in shapes}
    it = iter(toks)
    warm = conn(PRELOAD)
    timed(warm, next(it))
    for _ in range(ROUNDS):
        samples = {s: [] for s in shapes}
        for _ in range(PER_ROUND):
            samples["warm backend"].append(timed(warm, next(it)))
            samples["preload, after warm-up"].append(first_verification(PRELOAD, next(it), True))
            samples["preload, first statement"].append(first_verification(PRELOAD, next(it), False))
            samples["per backend, after warm-up"].append(first_verification(PLAIN, next(it), True))
            samples["per backend, first statement"].append(first_verification(PLAIN, next(it), False))
        for s in shapes:
            medians[s].append(statistics.median(samples[s]))
    warm.close()
    best = {s: min(m) for s, m in medians.items()}
    paired = statistics.median(p / w for p, w in zip(medians["preload, after warm-up"], medians["warm backend"]))
    for s in shapes:
        say(f"  {s}: best round median {best[s]:.0f} µs (rounds {', '.join(f'{m:.0f}' for m in medians[s])})")
    # Met only if both the best rounds and the median of the rounds' ratios are within 10%.
    ratio = best["preload, after warm-up"] / best["warm backend"]
    worse = max(ratio, paired)
    row("first verification of a never-seen token in a new connection, preload and a warm shared document, against a warm backend's",
        f"{ratio:.2f}x ({'within' if worse <= 1.10 else 'not within'} the 10% goal)",
        f"{best['preload, after warm-up']:.0f} µs against {best['warm backend']:.0f} µs: best of {ROUNDS} interleaved rounds' medians "
        f"(the median of the rounds' ratios: {paired:.2f}x), "
        "statement round trip at the client, after the same statement with a malformed token (refused before keys) and a jsonb output")
    row("the same as the connection's first statement",
        f"{best['preload, first statement'] / best['warm backend']:.2f}x",
        f"{best['preload, first statement']:.0f} µs: includes what any new backend's first call of a function pays")
    row("first verification in a new connection without preload (it fetches the document, endpoint on loopback)",
        f"{best['per backend, after warm-up'] / best['warm backend']:.2f}x",
        f"{best['per backend, after warm-up']:.0f} µs after warm-up, {best['per backend, first statement']:.0f} µs as the first statement; "
        "a real endpoint adds its network round trip and TLS")
    return ratio


def busy(port, toks, max_age):
    """100 connections verifying for BUSY_SECONDS with max age `max_age` s: requests made."""
    ep_before = ENDPOINT.count()
    stop = time.monotonic() + BUSY_SECONDS
    errors = []

    def client(i):
        try:
            with conn(port) as c:
                c.execute(f"SET auth_jwt.jwks_max_age = '{max_age}s'")
                c.execute("SET auth_jwt.jwks_cooldown = '1s'")
                n = 0
                while time.monotonic() < stop:
                    c.execute("SELECT auth_jwt.jwt_verify(%s)", (toks[(i * 97 + n) % len(toks)],))
                    n += 1
                    time.sleep(0.05)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    return ENDPOINT.count() - ep_before


def endpoint_load(toks):
    max_age = 5
    say(f"\n2. requests to the endpoint: 100 connections verifying for {BUSY_SECONDS} s, max age {max_age} s")
    shared = busy(PRELOAD, toks, max_age)
    plain = busy(PLAIN, toks, max_age)
    per_minute = lambda n: n * 60 / BUSY_SECONDS  # noqa: E731
    row(f"requests to the endpoint from 100 new connections verifying every 50 ms for {BUSY_SECONDS} s, max age {max_age} s",
        f"{shared} with preload, {plain} without",
        f"{per_minute(shared):.0f} and {per_minute(plain):.0f} a minute at this max age. With preload the worker refreshes a "
        "document in use ahead of its max age, by the timeout (at most a quarter of the age), so none of the 100 waits: "
        "at the default 5 min that is one request per 297 s per server, against one per backend per 5 min without")
    return shared, plain


def pgbench(port, db, tok):
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        f.write(f"SELECT auth_jwt.jwt_verify('{tok}');\n")
    out = subprocess.run([f"{PGBIN}/pgbench", "-n", "-C", "-c", "2", "-j", "2", "-T", str(PGBENCH_SECONDS), "-f", f.name,
                          "-h", HOST, "-p", str(port), "-U", "postgres", db], check=True, capture_output=True, text=True).stdout
    os.unlink(f.name)
    return float(re.search(r"tps = ([\d.]+) \(including reconnection times\)", out).group(1))


def connection_per_transaction(toks):
    say(f"\n3. pgbench -C (a new connection per transaction, 2 clients, {PGBENCH_SECONDS} s), interleaved, 3 runs")
    shapes = {"preload": (PRELOAD, DB), "per backend": (PLAIN, DB), "key table": (PLAIN, "bench_table")}
    tps = {s: [] for s in shapes}
    for _ in range(3):
        for s, (port, db) in shapes.items():
            tps[s].append(pgbench(port, db, toks[0]))
    med = {s: statistics.median(v) for s, v in tps.items()}
    for s in shapes:
        say(f"  {s}: {med[s]:.0f} TPS ({', '.join(f'{v:.0f}' for v in tps[s])})")
    row("pgbench -C, keys from the URL: with preload against without",
        f"{med['preload'] / med['per backend']:.2f}x the TPS",
        f"medians of 3 runs: {med['preload']:.0f} against {med['per backend']:.0f} TPS (each new connection without preload fetches; "
        f"endpoint on loopback); keys from the table: {med['key table']:.0f} TPS")


def main():
    global ENDPOINT
    kid, jwk = subprocess.run([BENCH, "jwks", "1"], check=True, capture_output=True, text=True).stdout.split("\t")
    entry = json.loads(jwk)
    entry.update(kid=kid, alg="EdDSA")
    ENDPOINT = Endpoint(json.dumps({"keys": [entry]}).encode())
    for port in (PRELOAD, PLAIN):
        setup(port, ENDPOINT.url)
    toks = tokens(ROUNDS * PER_ROUND * 5 + 10)
    new_connections(toks)
    endpoint_load(toks)
    connection_per_transaction(toks)
    with conn(PRELOAD) as c:
        pg = c.execute("SHOW server_version").fetchone()[0]
    cpu = re.search(r"model name\s*:\s*(.*)", open("/proc/cpuinfo").read()).group(1)
    text = "\n".join([
        "## Keys from a JWKS URL, shared by the server",
        "",
        f"`bench/jwks-shared` (release build; {cpu}, {os.cpu_count()} cores; PostgreSQL {pg}). Two clusters side by",
        "side in one run, one with `shared_preload_libraries = 'auth_jwt'` (one document per server, fetched by the",
        "auth_jwt jwks worker), one without (each backend fetches for itself); a JWKS endpoint on loopback. Every",
        "token is verified for the first time (no token cache).",
        "",
        "| measurement | result | detail |",
        "| --- | --- | --- |",
        *lines,
    ]) + "\n"
    write_section("JWKS_SHARED.md", "Keys from a JWKS URL, shared by the server", text)
    say("\nwrote bench/JWKS_SHARED.md and its section of BENCHMARKS.md")


if __name__ == "__main__":
    main()
