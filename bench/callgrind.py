"""Instruction counts for bench/callgrind (see there): a single-user PostgreSQL backend under
callgrind, counting only inside the functions measured (--toggle-collect)."""

import os
import re
import shutil
import subprocess
import tempfile

PGBIN = os.environ["PGBIN"]
MINT = os.environ["MINT"]
ISS = "https://app.example.com"
COLD = 1000  # never-seen tokens per cold measurement
ROWS = 2000  # rows per per-row measurement


def mint(*args):
    return subprocess.run([MINT, *args], check=True, capture_output=True, text=True).stdout.strip()


def run(data, statements, collect=()):
    """Run statements (one per line) in a single-user backend; with `collect`, under callgrind
    counting inside those functions. Returns (stdout, callgrind output file or None)."""
    out = os.path.join(data, "callgrind.out") if collect else None
    cmd = ["runuser", "-u", "postgres", "--"]
    if collect:
        cmd += ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
        cmd += [f"--toggle-collect={f}" for f in collect]
    cmd += [f"{PGBIN}/postgres", "--single", "-D", data, "-c", "max_parallel_workers_per_gather=0", "postgres"]
    # A single-user backend applies no ALTER DATABASE settings: set them for the session.
    statements = [f"SET auth_jwt.issuer = '{ISS}'", f"SET auth_jwt.audience = '{ISS}'", *statements]
    r = subprocess.run(cmd, input="".join(s.replace("\n", " ") + "\n" for s in statements), capture_output=True,
                       text=True, timeout=3600)
    if r.returncode != 0 or "ERROR" in r.stdout + r.stderr.replace("ERROR SUMMARY", ""):
        raise SystemExit((r.stdout + r.stderr)[-3000:])
    return r.stdout, out


def inclusive(out, pattern):
    """Inclusive instructions of the functions whose names match `pattern`, and their calls."""
    text = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", out], check=True,
                          capture_output=True, text=True).stdout
    total = 0
    for line in text.splitlines():
        m = re.match(r"\s*([\d,]+) .*?:(\S+?)(?: \[|$)", line)
        if m and re.search(pattern, m.group(2)):
            total += int(m.group(1).replace(",", ""))
    return total


SESSION_PARTS = (  # (label, functions whose inclusive counts make it up), in call order
    ("name resolution and lock", r"relation::Configured::resolve$|relation::.*lock|sessions::lock$"),
    ("plan check (prepare_if_stale)", r"sessions::prepare_if_stale$"),
    ("latest snapshot", r"snapshot_query::Snapshot::latest$"),
    ("owner switch and pinned settings", r"^(set_config_option|NewGUCNestLevel|AtEOXact_GUC|SetUserIdAndSecContext)$"),
    ("SPI connect and finish", r"^(SPI_connect|SPI_connect_ext|SPI_finish)$"),
    ("the kept plan run (executor, index probe)", r"^SPI_execute_snapshot$"),
)


def sessions(data):
    """What `auth_jwt.require_session` costs per transaction (issue 30): the same token verified
    once per transaction, with the setting off, on with the session kept between transactions (the
    session table watched), and on with it looked up in every transaction (its trigger dropped, as
    0.3.0 did for every table), and where that lookup's instructions go. Each figure is the
    difference between a backend that ran 550 such transactions and one that ran 50, over 500:
    what every transaction pays, without the backend's one-time work (the key load, the session
    plan's preparation, the first lookup)."""
    sid_tok = mint("token", "1", "alg=RS256", "sub=user1", "sid=s1")
    run(data, [
        'CREATE TABLE IF NOT EXISTS public.session (id text PRIMARY KEY, "expiresAt" timestamptz NOT NULL, '
        '"userId" text NOT NULL, token text NOT NULL UNIQUE)',
        "INSERT INTO public.session VALUES ('s1', now() + interval '7 days', 'user1', 'opaque') ON CONFLICT DO NOTHING",
        "SELECT * FROM auth_jwt.watch_session_table()",
    ])
    patterns = [("total", r"^auth_jwt_claim_uuid$"), ("lookup", r"relation::retrying$"), *SESSION_PARTS]

    def per_transaction(mode):
        counts = {}
        for txns in (50, 550):
            statements = [f"SET auth_jwt.require_session = {mode}"]
            for _ in range(txns):
                statements += ["BEGIN", f"SELECT set_config('auth_jwt.token', '{sid_tok}', true)",
                               "SELECT auth_jwt.jwt_claim_uuid()", "COMMIT"]
            _, out = run(data, statements, collect=["auth_jwt_claim_uuid"])
            counts[txns] = {label: inclusive(out, pattern) for label, pattern in patterns}
        return {label: (counts[550][label] - counts[50][label]) / 500 for label, _ in patterns}

    off, kept = per_transaction("off"), per_transaction("on")
    run(data, ["DROP TRIGGER auth_jwt_session_change ON public.session"])
    looked_up = per_transaction("on")
    print(f"per transaction, a cached token's first check: require_session off {off['total']:,.0f}, "
          f"on with the session kept {kept['total']:,.0f} (+{kept['total'] - off['total']:,.0f}, lookups "
          f"{kept['lookup']:,.0f}), on with a lookup in every transaction (session table not watched) "
          f"{looked_up['total']:,.0f} (+{looked_up['total'] - off['total']:,.0f}); that lookup "
          f"{looked_up['lookup']:,.0f}, of which:")
    for label, _ in SESSION_PARTS:
        print(f"    {label}: {looked_up[label]:,.0f}")


def main():
    data = tempfile.mkdtemp(prefix="auth_jwt-cg-")
    shutil.chown(data, "postgres", "postgres")
    os.chmod(data, 0o700)
    try:
        subprocess.run(["runuser", "-u", "postgres", "--", f"{PGBIN}/initdb", "-D", data, "-A", "trust", "-U",
                        "postgres"], check=True, capture_output=True)
        # Better-Auth-sized RS256 tokens, all different (the cache never hits).
        tokens = [mint("token", "1", "alg=RS256", f"sub=user{i}") for i in range(COLD + 1)]
        with open(os.path.join(data, "tokens.txt"), "w") as f:
            f.write("\n".join(tokens) + "\n")
        shutil.chown(os.path.join(data, "tokens.txt"), "postgres", "postgres")
        run(data, [
            'CREATE TABLE public.jwks (id text PRIMARY KEY, "publicKey" text NOT NULL, alg text)',
            f"INSERT INTO public.jwks VALUES ('k1', '{mint('jwk', '1', 'RS256')}', 'RS256')",
            "CREATE EXTENSION auth_jwt",
            "CREATE TABLE toks (n serial, tok text)",
            f"COPY toks (tok) FROM '{data}/tokens.txt'",
        ])
        # Cold: the first token (in another function) loads the keys; then every token is new.
        _, out = run(data, [
            "SELECT auth_jwt.jwt_claim_sub(tok) FROM toks WHERE n = 1",
            "SELECT count(auth_jwt.jwt_verify(tok)) FROM toks WHERE n > 1",
        ], collect=["auth_jwt_verify"])
        verify = inclusive(out, r"^auth_jwt_verify$")
        signature = inclusive(out, r"PublicKey::verify$")
        print(f"cold jwt_verify (RS256, {COLD} never-seen tokens): {(verify - signature) / COLD:,.0f} instructions per "
              f"call outside the signature check ({verify / COLD:,.0f} in all)")
        # Per row: the memo hit, for each way a request carries its token.
        tok = tokens[0]
        headers = '{"host": "api.example.com", "accept": "application/json"}'
        with_token = '{"host": "api.example.com", "authorization": "Bearer %s"}' % tok
        for label, setup in (
            ("auth_jwt.token", f"SELECT set_config('auth_jwt.token', '{tok}', true)"),
            ("request.headers with a token", f"SELECT set_config('request.headers', '{with_token}', true)"),
            ("request.headers, anonymous", f"SELECT set_config('request.headers', '{headers}', true)"),
        ):
            _, out = run(data, [
                "BEGIN", setup, "SELECT auth_jwt.jwt_claims()",
                f"SELECT count(*) FILTER (WHERE auth_jwt.jwt_claim_uuid() IS NOT NULL) FROM generate_series(1, {ROWS})",
                "COMMIT",
            ], collect=["auth_jwt_claim_uuid"])
            print(f"per row, {label}: {inclusive(out, r'^auth_jwt_claim_uuid$') / ROWS:,.0f} instructions")
        sessions(data)
    finally:
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
