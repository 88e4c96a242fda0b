"""Keys from a JWKS URL (auth_jwt.jwks_url) served on loopback by a test endpoint whose answers
the tests set: freshness (max age, Cache-Control, unknown kids, cooldown), outages (stale keys for
a bounded time, then a clear error), abuse (slow, huge, redirected, not JSON, bad keys), TLS with
a CA made here, cancellation, and the number of requests 50 busy backends make through a rotation.
(The real Better Auth serving its JWKS: tests/interop/jwks-url.test.mjs.)"""

import json
import os
import re
import shutil
import ssl
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg
import pytest

from conftest import connect, jwk, one, token


def entry(seed: int, kid: str | None = None, **extra) -> dict:
    k = json.loads(jwk(seed))
    k.update(kid=kid or f"k{seed}", alg="EdDSA", **extra)
    return k


def doc(*entries) -> bytes:
    return json.dumps({"keys": list(entries)}).encode()


class Endpoint:
    """A JWKS endpoint on 127.0.0.1: answers with `body`, `status` and `headers` after `delay`
    seconds, and counts the requests it got."""

    def __init__(self, tls: ssl.SSLContext | None = None):
        self.body, self.status, self.headers, self.delay = doc(), 200, {}, 0.0
        self.requests = 0
        self.lock = threading.Lock()
        ep = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                with ep.lock:
                    ep.requests += 1
                    body, status, headers, delay = ep.body, ep.status, dict(ep.headers), ep.delay
                if delay:
                    time.sleep(delay)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", headers.pop("Content-Type", "application/json"))
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if tls:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.scheme = "https" if tls else "http"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return f"{self.scheme}://127.0.0.1:{self.server.server_address[1]}/api/auth/jwks"

    @property
    def host(self):
        return f"127.0.0.1:{self.server.server_address[1]}"

    def set(self, body=None, status=200, headers=None, delay=0.0):
        with self.lock:
            self.body = body if body is not None else self.body
            self.status, self.headers, self.delay = status, headers or {}, delay

    def count(self):
        with self.lock:
            return self.requests

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoint():
    ep = Endpoint()
    ep.set(doc(entry(3), entry(4)))
    yield ep
    ep.close()


@pytest.fixture(scope="module")
def pki():
    """A CA and a server certificate for 127.0.0.1, made with openssl; files readable by the server."""
    d = tempfile.mkdtemp(prefix="auth_jwt-pki-")
    os.chmod(d, 0o755)
    run = lambda *a: subprocess.run(["openssl", *a], cwd=d, check=True, capture_output=True)  # noqa: E731
    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "ca.key",
        "-out", "ca.pem", "-days", "2", "-subj", "/CN=auth_jwt test CA")
    run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "server.key",
        "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    with open(os.path.join(d, "ext.cnf"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf")
    for f in os.listdir(d):
        os.chmod(os.path.join(d, f), 0o644)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(d, "server.pem"), os.path.join(d, "server.key"))
    yield {"ca": os.path.join(d, "ca.pem"), "ctx": ctx}
    shutil.rmtree(d, ignore_errors=True)


def remote(c, url, **settings):
    """Point this superuser session at `url`, with test-sized timings unless given."""
    values = {"jwks_url": url, "jwks_max_age": "60s", "jwks_cooldown": "1s", **settings}
    for k, v in values.items():
        c.execute(f"SET auth_jwt.{k} = '{v}'")


def verify(c, tok):
    """The token's sub, or (sqlstate, message, detail)."""
    try:
        return one(c, "SELECT auth_jwt.jwt_verify(%s)->>'sub'", tok)
    except psycopg.Error as e:
        return (e.sqlstate, e.diag.message_primary, e.diag.message_detail)


def fetches(c):
    return one(c, "SELECT jwks_fetches FROM auth_jwt.stats()")


def test_keys_come_from_the_url_not_the_table(db, endpoint):
    c = connect(db)
    remote(c, endpoint.url, jwks_cooldown="1min")
    assert verify(c, token(3)) == "user3"
    assert verify(c, token(4)) == "user4"
    refused = verify(c, token(1))  # k1 is in the table, not in the document
    assert refused[:2] == ("28000", "unable to find matching signing key")
    assert endpoint.count() == 1, "an unknown kid right after a fetch waits for the cooldown"
    for _ in range(20):
        assert verify(c, token(3, sub="again")) == "again"
    assert endpoint.count() == 1, "fresh keys are used without asking again"
    rows = c.execute("SELECT kid, alg, status, source, fetched_at IS NOT NULL FROM auth_jwt.jwks_keys() ORDER BY kid").fetchall()
    assert rows == [("k3", "EdDSA", "usable", endpoint.host, True), ("k4", "EdDSA", "usable", endpoint.host, True)]
    stats = c.execute("SELECT jwks_fetches, jwks_fetch_failures, jwks_bytes > 0 FROM auth_jwt.stats()").fetchone()
    assert stats == (1, 0, True)
    # Unset: the table again.
    c.execute("RESET auth_jwt.jwks_url")
    assert verify(c, token(1)) == "user1"


def test_https_with_a_ca_file_and_without(db, pki):
    ep = Endpoint(tls=pki["ctx"])
    ep.set(doc(entry(3)))
    try:
        c = connect(db)
        remote(c, ep.url, jwks_ca_file=pki["ca"])
        assert verify(c, token(3)) == "user3"
        c2 = connect(db)
        remote(c2, ep.url)  # the system's roots do not know the test CA
        state, message, detail = verify(c2, token(3))
        assert (state, message) == ("58000", f"auth_jwt cannot fetch keys from {ep.host}")
        assert "TLS or protocol error: invalid peer certificate: UnknownIssuer" in detail, detail
        remote(c2, ep.url.replace("https://", "http://"))  # plain HTTP to a TLS port
        assert verify(c2, token(3))[0] == "58000"
    finally:
        ep.close()


def test_a_new_kid_is_fetched_at_once_and_a_removed_one_stops(db, endpoint):
    c = connect(db)
    remote(c, endpoint.url, jwks_cooldown="3s")
    assert verify(c, token(3)) == "user3"
    endpoint.set(doc(entry(4), entry(5)))  # rotation: k5 added, k3 removed
    assert verify(c, token(5))[1] == "unable to find matching signing key", "within the cooldown: not yet"
    time.sleep(3.1)
    assert verify(c, token(5)) == "user5", "after it, an unknown kid refetches"
    assert verify(c, token(3))[:2] == ("28000", "unable to find matching signing key"), "gone with that fetch"
    n = endpoint.count()
    for kid in ("nope1", "nope2", "nope3"):
        assert verify(c, token(4, kid=kid))[1] == "unable to find matching signing key"
    assert endpoint.count() == n, "unknown kids within the cooldown fetch nothing"
    time.sleep(3.1)
    verify(c, token(4, kid="nope4"))
    assert endpoint.count() == n + 1, "and one after it"


def test_max_age_and_cache_control(db, endpoint):
    c = connect(db)
    remote(c, endpoint.url, jwks_max_age="3s", jwks_cooldown="1s")
    verify(c, token(3))
    assert endpoint.count() == 1
    endpoint.set(doc(entry(4)))  # k3 removed, k4 kept
    assert verify(c, token(3)) == "user3", "within max age the old document stands"
    time.sleep(3.1)
    assert verify(c, token(3))[1] == "unable to find matching signing key", "after it, the key is gone"
    assert endpoint.count() == 2
    # Cache-Control shortens the max age; no-store means "as often as the cooldown allows".
    c2 = connect(db)
    remote(c2, endpoint.url, jwks_max_age="1h", jwks_cooldown="3s")
    endpoint.set(doc(entry(4)), headers={"Cache-Control": "no-store"})
    n = endpoint.count()
    for _ in range(5):
        assert verify(c2, token(4)) == "user4"
    assert endpoint.count() == n + 1
    time.sleep(3.1)
    assert verify(c2, token(4)) == "user4"
    assert endpoint.count() == n + 2


def test_max_age_below_the_cooldown_still_refreshes_at_max_age(db, endpoint):
    """The cooldown limits extra fetches, never the refresh at max age (red-team finding 3)."""
    c = connect(db)
    remote(c, endpoint.url, jwks_max_age="2s", jwks_cooldown="30s")
    assert verify(c, token(3)) == "user3"
    endpoint.set(doc(entry(4)))  # k3 removed
    time.sleep(2.2)
    assert verify(c, token(3))[:2] == ("28000", "unable to find matching signing key"), "gone at max age"
    assert verify(c, token(4)) == "user4"
    assert endpoint.count() == 2


def test_an_outage_keeps_the_last_good_keys_for_a_bounded_time(db, endpoint):
    c = connect(db)
    remote(c, endpoint.url, jwks_max_age="1s", jwks_stale_if_error="4s", jwks_cooldown="1s")
    fetched = time.monotonic()
    assert verify(c, token(3)) == "user3"
    endpoint.set(b"upstream down", status=503, headers={"Content-Type": "text/plain"})
    time.sleep(1.1)
    assert verify(c, token(3)) == "user3", "stale but within jwks_stale_if_error"
    assert one(c, "SELECT jwks_fetch_failures FROM auth_jwt.stats()") == 1
    n, started = endpoint.count(), time.monotonic()
    for _ in range(10):
        assert verify(c, token(3)) == "user3"
    assert endpoint.count() <= n + 1 + int(time.monotonic() - started), "a failing endpoint is asked at most once per cooldown"
    time.sleep(max(0.0, fetched + 4.5 - time.monotonic()))
    state, message, detail = verify(c, token(3))
    assert (state, message) == ("58000", f"auth_jwt cannot fetch keys from {endpoint.host}")
    assert re.fullmatch(r"The last good document was fetched \d+ s ago, longer than auth_jwt.jwks_stale_if_error "
                        r"allows; fetching again fails: HTTP 503\.", detail), detail
    endpoint.set(doc(entry(3)), status=200)
    time.sleep(1.1)
    assert verify(c, token(3)) == "user3", "recovers by itself, after the cooldown"


def test_no_usable_document_fails_closed_with_the_reason(db, endpoint):
    big = doc(*(entry(3, kid=f"k{i}") for i in range(30)))
    cases = [
        ({"status": 500}, "HTTP 500"),
        ({"body": b"<html>login</html>", "headers": {"Content-Type": "text/html"}}, "the response is not a JSON object"),
        ({"body": b'{"keys": {}}'}, "the response has \"keys\" as an object, not an array"),
        ({"body": big}, "the response is larger than auth_jwt.jwks_max_size (1024 bytes)"),
        ({"status": 302, "headers": {"Location": "http://127.0.0.1:1/evil"}}, "HTTP 302: redirects are not followed"),
    ]
    for answer, reason in cases:
        endpoint.set(**answer)
        c = connect(db)
        remote(c, endpoint.url, jwks_max_size="1kB")
        state, message, detail = verify(c, token(3))
        assert (state, message) == ("58000", f"auth_jwt cannot fetch keys from {endpoint.host}"), answer
        assert reason in detail, (reason, detail)
        assert token(3) not in detail


def test_bad_entries_are_unusable_keys_with_a_reason(db, endpoint):
    k3 = entry(3)
    endpoint.set(doc(k3, dict(k3), entry(4, kid="k4"), {**entry(5), "x": "AAAA"}, {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
                     {k: v for k, v in entry(6).items() if k != "kid"}))
    c = connect(db)
    remote(c, endpoint.url)
    assert verify(c, token(4)) == "user4"
    assert verify(c, token(3))[1] == "unable to find matching signing key", "a kid that appears twice is unusable"
    assert verify(c, token(5))[1] == "unable to find matching signing key"
    reasons = dict(c.execute("SELECT coalesce(kid, '-'), status || coalesce(': ' || reason, '') FROM auth_jwt.jwks_keys()").fetchall())
    assert reasons["k4"] == "usable"
    assert "the same kid names more than one key" in reasons["k3"], reasons
    assert reasons["k5"].startswith("invalid"), reasons
    assert "private key material" in reasons["hmac"], reasons
    assert reasons["-"] == "invalid: the entry has no kid"


def test_a_slow_endpoint_is_bounded_by_the_timeout_and_a_cancel_stops_the_wait(db, endpoint):
    endpoint.set(delay=3)
    c = connect(db)
    remote(c, endpoint.url, jwks_timeout="300ms")
    state, _, detail = verify(c, token(3))
    assert state == "58000" and "no complete response within auth_jwt.jwks_timeout (300 ms)" in detail, detail
    # A fetch that would wait 30 s: statement_timeout ends it, and the backend goes on.
    c2 = connect(db)
    remote(c2, endpoint.url, jwks_timeout="30s")
    c2.execute("SET statement_timeout = '200ms'")
    assert verify(c2, token(3))[0] == "57014"
    c2.execute("RESET statement_timeout")
    # pg_cancel_backend from another session, likewise.
    c3 = connect(db)
    remote(c3, endpoint.url, jwks_timeout="30s", jwks_cooldown="1s")
    pid = one(c3, "SELECT pg_backend_pid()")
    canceller = threading.Timer(0.3, lambda: connect(db).execute("SELECT pg_cancel_backend(%s)", (pid,)))
    canceller.start()
    assert verify(c3, token(3))[0] == "57014"
    canceller.join()
    endpoint.set(delay=0)
    time.sleep(1.1)
    assert verify(c3, token(3)) == "user3", "the same backend fetches again after the cooldown"


def test_a_ca_file_that_is_no_regular_file_fails_at_once(db, endpoint):
    """A FIFO (or a device) named as the CA file: a clear error now, not a fetch that hangs."""
    d = tempfile.mkdtemp(prefix="auth_jwt-ca-")
    os.chmod(d, 0o755)
    fifo = os.path.join(d, "ca.pem")
    os.mkfifo(fifo, 0o644)
    try:
        c = connect(db)
        c.execute("SET statement_timeout = '10s'")
        for n, path in enumerate((fifo, d, "/dev/zero")):
            # A URL of its own each time, so no cooldown from the previous attempt applies.
            remote(c, endpoint.url.replace("http://", "https://") + f"?{n}", jwks_ca_file=path)
            state, _, detail = verify(c, token(3))
            assert state == "58000" and f"CA file {path} is not a regular file" in detail, (path, state, detail)
        # Plain HTTP reads no CA file: the same backend fetches as before.
        remote(c, endpoint.url)
        assert verify(c, token(3)) == "user3"
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_import_jwks_refuses_a_snapshot_older_than_its_lock(db):
    """Two imports racing: the later one must leave exactly its document. Under REPEATABLE READ it
    would not see the key the other just added, and that key would stay; so it is refused there."""
    def document(*seeds):
        return json.dumps({"keys": [entry(s) for s in seeds]})

    c1, c2 = connect(db), connect(db)
    for c in (c1, c2):
        c.execute("SET auth_jwt.jwks_table = 'auth_jwt.jwks'")
    c1.execute("SELECT auth_jwt.import_jwks(%s)", (document(3),))
    c2.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
    assert one(c2, "SELECT count(*) FROM auth_jwt.jwks") == 1  # the snapshot is taken
    c1.execute("SELECT auth_jwt.import_jwks(%s)", (document(3, 4),))  # k4 added, committed
    with pytest.raises(psycopg.Error) as e:
        c2.execute("SELECT auth_jwt.import_jwks(%s)", (document(3),))
    assert (e.value.sqlstate, e.value.diag.message_primary) == ("25000", "auth_jwt.import_jwks must run at READ COMMITTED")
    assert "REPEATABLE READ" in e.value.diag.message_detail
    c2.execute("ROLLBACK")
    # In its own transaction the same import leaves exactly its document: k4 gone, k3 verifying.
    assert c2.execute("SELECT kid, action FROM auth_jwt.import_jwks(%s) ORDER BY kid", (document(3),)).fetchall() == [
        ("k3", "unchanged"), ("k4", "removed")]
    assert [r[0] for r in c1.execute("SELECT id FROM auth_jwt.jwks ORDER BY id")] == ["k3"]
    assert verify(c1, token(3)) == "user3"
    assert verify(c1, token(4))[0] == "28000"


def test_a_cancelled_fetch_still_counts_for_the_cooldown(db, endpoint):
    """A statement cancelled while it waits (here by statement_timeout, which any role may set)
    must not let the next statement fetch again: one request per cooldown, however many statements
    give up waiting (red-team finding 1). The request stays in flight, and the statements after it
    wait for the same one; its answer is applied when it arrives."""
    # The timeout is long enough that a statement reaches its wait before it fires, even on a busy
    # machine (a statement cancelled before it waits is no interrupted wait); the answer comes
    # after about fifteen of them.
    endpoint.set(delay=1.5)
    c = connect(db)
    remote(c, endpoint.url, jwks_cooldown="60s", jwks_timeout="5s")
    c.execute("SET statement_timeout = '100ms'")
    assert verify(c, token(3))[0] == "57014", "the first statement gives up waiting"
    outcomes = [verify(c, token(3)) for _ in range(20)]
    assert all(o == "user3" or o[0] == "57014" for o in outcomes), outcomes
    time.sleep(1.6)
    assert verify(c, token(3)) == "user3", "the answer of the one request, applied when it arrived"
    assert endpoint.count() == 1, "one request, not one per statement"
    interrupted = one(c, "SELECT jwks_fetches_interrupted FROM auth_jwt.stats()")
    assert interrupted == 1 + sum(o != "user3" for o in outcomes), "every interrupted wait is counted"


def test_cancelling_every_refresh_does_not_keep_a_removed_key(db, endpoint):
    """Issue 26, red-team finding: an ordinary role cancels the refresh each time the cooldown lets
    one start, then verifies again. In 0.3.0 the cancelled attempt used up the cooldown, and the
    document past max age kept verifying under stale-if-error although the endpoint never failed:
    a removed key lived as long as the role kept cancelling. A fetch that did not complete is no
    failure: past max age the role waits for the request in flight, and gets the new document."""
    su = connect(db)
    for k, v in {"jwks_url": endpoint.url, "jwks_max_age": "2s", "jwks_cooldown": "1s",
                 "jwks_stale_if_error": "30s"}.items():
        su.execute(f"ALTER ROLE app_user IN DATABASE {db} SET auth_jwt.{k} = '{v}'")
    su.execute("GRANT EXECUTE ON FUNCTION auth_jwt.stats() TO app_user")  # the operators' grant, for its counters
    endpoint.set(doc(entry(3), entry(4)), delay=0.2)
    c = connect(db, user="app_user")
    assert verify(c, token(3)) == "user3"
    endpoint.set(doc(entry(4)), delay=0.2)  # Better Auth drops k3
    removed = time.monotonic()
    outcomes = []
    while time.monotonic() - removed < 8:
        c.execute("SET statement_timeout = '20ms'")
        first = verify(c, token(3))  # starts the refresh when one is due, and gives up waiting for it
        c.execute("SET statement_timeout = 0")
        outcomes.append((time.monotonic() - removed, first))
        if first[0] == "57014":  # a refresh was cancelled: verify at once, within the cooldown it used
            outcomes.append((time.monotonic() - removed, verify(c, token(3))))
        else:
            time.sleep(0.02)
    # Max age (2 s) plus the endpoint's answer (0.2 s) after the fetch, with room for a busy machine.
    late = [o for t, o in outcomes if t > 3.0]
    assert late and all(o != "user3" for o in late), [(round(t, 2), o) for t, o in outcomes if o == "user3"]
    assert any(o[:2] == ("28000", "unable to find matching signing key") for o in late), late
    assert verify(c, token(4)) == "user4", "the new document is the one in force"
    interrupted, failures = c.execute("SELECT jwks_fetches_interrupted, jwks_fetch_failures FROM auth_jwt.stats()").fetchone()
    assert interrupted >= 1 and failures == 0, (interrupted, failures)
    assert endpoint.count() <= 2 + int(time.monotonic() - removed), "still one request per cooldown at most"


def test_an_answer_picked_up_late_is_as_old_as_its_arrival(db, endpoint):
    """Red-team finding on the fix above: the answer to a cancelled request waits in the backend
    until a statement needs keys. Dated from its pickup, it made a removed key verify for max age
    after any idle time the role chose; it is as old as its arrival."""
    su = connect(db)
    for k, v in {"jwks_url": endpoint.url, "jwks_max_age": "2s", "jwks_cooldown": "1s",
                 "jwks_stale_if_error": "0"}.items():
        su.execute(f"ALTER ROLE app_user IN DATABASE {db} SET auth_jwt.{k} = '{v}'")
    endpoint.set(doc(entry(3), entry(4)), delay=0.05)
    c = connect(db, user="app_user")
    assert verify(c, token(3)) == "user3"
    time.sleep(1.1)  # the cooldown passes: an unknown kid may fetch again
    with pytest.raises(psycopg.errors.QueryCanceled):  # the refresh starts, its wait is cancelled
        c.execute("SELECT pg_cancel_backend(pg_backend_pid()), auth_jwt.jwt_verify(%s)", (token(3, kid="k9"),))
    time.sleep(0.3)  # its answer, still with k3, has arrived and waits to be picked up
    endpoint.set(doc(entry(4)), delay=0.05)  # Better Auth drops k3
    time.sleep(2.5)  # longer than max age
    assert verify(c, token(3))[:2] == ("28000", "unable to find matching signing key")
    assert verify(c, token(4)) == "user4"
    assert endpoint.count() == 3, "the first fetch, the cancelled one, and one refresh"


def test_explain_looks_keys_up_as_verify_does(db, endpoint):
    """Issue 28: jwt_explain took the current document without the unknown-kid refetch that
    jwt_verify does, so a token signed by a newly published key was explained as "no key" while
    jwt_verify fetched the key and passed."""
    c = connect(db)
    remote(c, endpoint.url, jwks_cooldown="1s")
    assert verify(c, token(3)) == "user3"  # the document: k3, k4
    endpoint.set(doc(entry(3), entry(4), entry(5)))  # Better Auth publishes k5
    time.sleep(1.1)  # past the cooldown, as for jwt_verify
    rows = dict(c.execute("SELECT step, ok FROM auth_jwt.jwt_explain(%s)", (token(5),)).fetchall())
    assert (rows["key"], rows["signature"], rows["exp"]) == (True, True, True), rows
    assert False not in rows.values(), rows
    assert verify(c, token(5)) == "user5"
    assert endpoint.count() == 2, "the refetch explain made serves the verification too"


def test_a_stale_document_is_served_only_after_a_completed_failure_and_logged_once(db, endpoint):
    """The stale-if-error window opens only when a fetch completed and failed; serving the old
    document is logged once per document."""
    log = os.path.join(os.environ["PGDATA_DIR"], "log")
    c = connect(db)
    remote(c, endpoint.url, jwks_max_age="1s", jwks_cooldown="1s", jwks_stale_if_error="60s")
    assert verify(c, token(3)) == "user3"
    endpoint.set(b"down", status=503, headers={"Content-Type": "text/plain"})
    time.sleep(1.1)
    start = os.path.getsize(log)
    for _ in range(5):
        assert verify(c, token(3)) == "user3", "within stale-if-error after a failed fetch"
    with open(log) as f:
        f.seek(start)
        lines = [line for line in f if "past auth_jwt.jwks_max_age" in line]
    assert len(lines) == 1 and endpoint.host in lines[0] and "HTTP 503" in lines[0], lines


def test_parallel_workers_do_not_fetch(db, endpoint):
    """Every parallel query starts workers with empty caches: were they to fetch, each would ask
    the endpoint (red-team finding 2). The verifying functions are PARALLEL RESTRICTED, so the
    leader verifies with its one fetched document; re-marked SAFE, a worker refuses to fetch."""
    c = connect(db)
    c.execute("CREATE TABLE toks AS SELECT i, %s::text AS tok FROM generate_series(1, 5000) i", (token(3),))
    c.execute("ANALYZE toks")
    remote(c, endpoint.url)
    for s in ("max_parallel_workers_per_gather = 4", "parallel_setup_cost = 0", "parallel_tuple_cost = 0",
              "min_parallel_table_scan_size = 0"):
        c.execute(f"SET {s}")
    q = "SELECT count(auth_jwt.jwt_verify(tok)) FROM toks"
    assert "Gather" in "\n".join(r[0] for r in c.execute(f"EXPLAIN {q}").fetchall()), "the scan is still parallel"
    for _ in range(10):
        assert one(c, q) == 5000
    assert endpoint.count() == 1
    c.execute("ALTER FUNCTION auth_jwt.jwt_verify(text) PARALLEL SAFE")
    c.execute("SET parallel_leader_participation = off")
    state, message, detail = verify_all(c, q)
    assert (state, message) == ("58000", f"auth_jwt cannot fetch keys from {endpoint.host}")
    assert "Parallel workers do not fetch keys" in detail, detail
    assert endpoint.count() == 1


def verify_all(c, q):
    try:
        return one(c, q)
    except psycopg.Error as e:
        return (e.sqlstate, e.diag.message_primary, e.diag.message_detail)


def test_url_rules(db):
    c = connect(db)
    for url, why in (("ftp://127.0.0.1/jwks", "must start with https:// or http://"),
                     ("https://user:secret@127.0.0.1:1/jwks", "must not carry credentials"),
                     ("http://127.0.0.1:1/jwks", "network error: connection refused")):
        remote(c, url)
        state, message, detail = verify(c, token(3))
        assert state == "58000" and why in detail, detail
        assert "secret" not in message + detail


def test_fifty_busy_backends_through_a_rotation_make_a_bounded_number_of_requests(db, endpoint):
    """Every backend fetches on first use, when the max age passes, and once per cooldown for an
    unknown kid: count what the endpoint sees while 50 backends verify without pause and keys
    rotate twice."""
    su = connect(db)
    # A generous timeout: this test counts requests, and 50 first fetches at once from a Python
    # endpoint on a busy 2-core machine have taken over the default 2 s.
    for k, v in {"jwks_url": endpoint.url, "jwks_max_age": "2s", "jwks_cooldown": "1s", "jwks_timeout": "15s"}.items():
        su.execute(f"ALTER DATABASE {db} SET auth_jwt.{k} = '{v}'")
    endpoint.set(doc(entry(3)))
    stop = time.monotonic() + 6
    phase = {"kid": 3}
    wrong = []

    def client(i):
        c = connect(db)
        n = 0
        while time.monotonic() < stop:
            seed = phase["kid"]
            got = verify(c, token(seed, sub=f"c{i}")) if n % 50 == 0 else verify(c, TOKENS[seed])
            if got not in (f"c{i}", f"user{seed}") and got[1:2] != ("unable to find matching signing key",):
                wrong.append(got)
            n += 1
        c.close()
        return n

    TOKENS = {s: token(s) for s in (3, 4, 5)}
    started = time.monotonic()
    with ThreadPoolExecutor(50) as pool:
        futures = [pool.submit(client, i) for i in range(50)]
        time.sleep(2)
        endpoint.set(doc(entry(3), entry(4)))
        phase["kid"] = 4
        time.sleep(2)
        endpoint.set(doc(entry(4), entry(5)))
        phase["kid"] = 5
        verifications = sum(f.result() for f in futures)
    elapsed = time.monotonic() - started
    requests = endpoint.count()
    bound = 50 * (1 + elapsed / 2 + elapsed / 1 + 1)
    assert not wrong, wrong[:5]
    assert requests <= bound, (requests, bound)
    print(f"\n50 backends, {elapsed:.1f} s, {verifications} verifications: {requests} requests to the endpoint (bound {bound:.0f})")


def test_a_function_that_sets_another_url_costs_no_request_per_call(db, endpoint):
    """A SECURITY DEFINER function with SET auth_jwt.jwks_url called on every row beside the
    session's own URL: each backend keeps a few URLs' documents and cooldowns, so each URL is
    fetched once (it was one request per call: red-team, round 16)."""
    other = Endpoint()
    other.set(doc(entry(5)))
    c = connect(db)
    try:
        c.execute(f"""CREATE FUNCTION public.verify_other(t text) RETURNS text LANGUAGE sql SECURITY DEFINER
                      SET auth_jwt.jwks_url = '{other.url}' SET auth_jwt.jwks_max_age = '60s'
                      AS $$ SELECT auth_jwt.jwt_verify(t)->>'sub' $$""")
        remote(c, endpoint.url)
        rows = c.execute("SELECT public.verify_other(%s), auth_jwt.jwt_verify(%s)->>'sub' FROM generate_series(1, 30)",
                         (token(5), token(3))).fetchall()
        assert rows == [("user5", "user3")] * 30
        assert (endpoint.count(), other.count()) == (1, 1)
        assert fetches(c) == 2
    finally:
        c.execute("DROP FUNCTION IF EXISTS public.verify_other(text)")
        c.close()
        other.close()


def test_a_document_fetched_under_one_ca_file_is_not_served_under_another(db, pki):
    """A backend keys what it fetched by URL and CA file: after SET auth_jwt.jwks_ca_file to a
    bundle that does not know the endpoint's CA, the document fetched under the first is not
    served (red-team, round 17: it was, until its max age)."""
    ep = Endpoint(tls=pki["ctx"])
    ep.set(doc(entry(3)))
    try:
        c = connect(db)
        remote(c, ep.url, jwks_ca_file=pki["ca"])
        tok = token(3)
        assert verify(c, tok) == "user3"
        c.execute("SET auth_jwt.jwks_ca_file = '/etc/ssl/certs/ca-certificates.crt'")
        state, _, detail = verify(c, tok)
        assert state == "58000" and "UnknownIssuer" in detail, detail
        c.execute(f"SET auth_jwt.jwks_ca_file = '{pki['ca']}'")
        assert verify(c, tok) == "user3"
        assert ep.count() == 1, "the first CA file's document was kept, and served under it again"
    finally:
        ep.close()


def url_functions(c, urls, **settings):
    """SECURITY DEFINER functions v0(t)... each verifying with its own URL: their names."""
    sets = "".join(f" SET auth_jwt.{k} = '{v}'" for k, v in settings.items())
    for i, u in enumerate(urls):
        c.execute(f"""CREATE FUNCTION public.v{i}(t text) RETURNS text LANGUAGE sql SECURITY DEFINER
                      SET auth_jwt.jwks_url = '{u}'{sets} AS $$ SELECT auth_jwt.jwt_verify(t)->>'sub' $$""")
    return [f"public.v{i}" for i in range(len(urls))]


def drop_functions(c, names):
    for n in names:
        c.execute(f"DROP FUNCTION IF EXISTS {n}(text)")


@pytest.mark.parametrize("n", [6, 40])
def test_many_urls_in_turn_cost_one_request_each(db, endpoint, n):
    """URLs used in turn by one backend: one request each, every call verified (red-team: beyond
    four URLs the oldest one's document and cooldown were dropped, a request per call, round 17;
    beyond 32 the documents were dropped and calls failed until the cooldown passed, round 18)."""
    c = connect(db)
    names = url_functions(c, [f"{endpoint.url}?tenant={i}" for i in range(n)], jwks_max_age="300s", jwks_cooldown="30s")
    try:
        tok = token(3)
        for _ in range(3):
            for name in names:
                assert one(c, f"SELECT {name}(%s)", tok) == "user3"
        calls = ", ".join(f"{name}(%s)" for name in names)
        assert c.execute(f"SELECT {calls} FROM generate_series(1, 10)", [tok] * n).fetchall() == [("user3",) * n] * 10
        assert endpoint.count() == n
    finally:
        drop_functions(c, names)
        c.close()

def test_requests_left_behind_by_cancelled_waits_are_bounded_per_backend(db):
    """Requests to a hanging endpoint, each left in flight by a cancelled wait under another URL:
    at most eight run at once in a backend, then a verification needing a ninth fails at once
    (red-team, round 17: a thread and a socket per call, a thousand, then no file descriptors)."""
    import socket

    hang = socket.socket()
    hang.bind(("127.0.0.1", 0))
    hang.listen(64)  # never accepted: every request waits for its timeout
    port = hang.getsockname()[1]
    c = connect(db)
    names = url_functions(c, [f"http://127.0.0.1:{port}/jwks/{i}" for i in range(12)], jwks_timeout="60s")
    try:
        pid = one(c, "SELECT pg_backend_pid()")
        c.execute("SET statement_timeout = '100ms'")
        states = []
        for n in names:
            try:
                one(c, f"SELECT {n}(%s)", token(3))
            except psycopg.Error as e:
                states.append((e.sqlstate, e.diag.message_detail or ""))
        c.execute("RESET statement_timeout")
        assert [s for s, _ in states[:8]] == ["57014"] * 8, states
        assert all(s == "58000" and "already waits for 8 requests" in d for s, d in states[8:]), states
        threads = int(next(line.split()[1] for line in open(f"/proc/{pid}/status") if line.startswith("Threads:")))
        assert threads <= 1 + 8, threads
    finally:
        drop_functions(c, names)
        c.close()
        hang.close()
