"""Keys from a JWKS URL shared by the whole server (auth_jwt in shared_preload_libraries): one
document per URL in shared memory, fetched only by the "auth_jwt jwks" background worker, read by
every backend, new connections and parallel workers included. Counted at a test endpoint: new
connections make no request, a restart makes one, an outage is survived by new connections for
jwks_stale_if_error, a removed key is refused everywhere within max age, an added one costs one
request, a URL change reaches every backend, 1,000 URL switches keep memory bounded, and a hot
standby has its own cache. (Without preload each backend fetches for itself: test_jwks_url.py.)"""

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time

import psycopg
import pytest

from conftest import ISS, PGBIN, connect, one, pg, token
from test_jwks_url import Endpoint, doc, entry, verify

PORT, STANDBY_PORT = 54342, 54343


class Cluster:
    """A cluster of its own with auth_jwt preloaded (initdb, start, restart, stop)."""

    def __init__(self, port, data=None):
        self.port = port
        self.data = data or tempfile.mkdtemp(prefix="auth_jwt-shared-")

    def init(self):
        shutil.chown(self.data, "postgres", "postgres")
        os.chmod(self.data, 0o700)
        pg(f"{PGBIN}/initdb", "-D", self.data, "-A", "trust", "-U", "postgres")
        self.conf(
            "shared_preload_libraries = 'auth_jwt'\nwal_level = replica\nmax_wal_senders = 4\n"
            f"auth_jwt.issuer = '{ISS}'\nauth_jwt.audience = '{ISS}'\n"
            # Room for one document per slot: what jwks_max_size says at server start.
            "auth_jwt.jwks_max_size = '64kB'\n"
        )
        with open(os.path.join(self.data, "pg_hba.conf"), "a") as f:
            f.write("local replication all trust\n")
        return self

    def conf(self, text):
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write(f"\nport = {self.port}\nlisten_addresses = ''\nunix_socket_directories = '{os.environ['PGHOST']}'\nfsync = off\n{text}\n")

    def start(self):
        pg(f"{PGBIN}/pg_ctl", "-D", self.data, "-l", f"{self.data}/log", "-w", "start")

    def restart(self):
        pg(f"{PGBIN}/pg_ctl", "-D", self.data, "-l", f"{self.data}/log", "-w", "-m", "fast", "restart")

    def stop(self):
        subprocess.run(["runuser", "-u", "postgres", "--", f"{PGBIN}/pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop"],
                       capture_output=True)
        shutil.rmtree(self.data, ignore_errors=True)

    def connect(self, **kw):
        return connect("app", port=self.port, **kw)

    def log(self):
        with open(os.path.join(self.data, "log")) as f:
            return f.read()


@pytest.fixture(scope="module")
def server():
    c = Cluster(PORT).init()
    c.start()
    try:
        with connect("postgres", port=PORT) as admin:
            admin.execute("CREATE DATABASE app")
        with c.connect() as su:
            su.execute("CREATE EXTENSION auth_jwt")
        yield c
    finally:
        c.stop()


@pytest.fixture(autouse=True)
def empty_slots(server):
    """Each test starts with empty shared memory: a URL another test used keeps its slot for its
    max age after its last use, and only four URLs share at once."""
    server.restart()


@pytest.fixture
def endpoint():
    ep = Endpoint()
    ep.set(doc(entry(3), entry(4)))
    yield ep
    ep.close()


def use(server, url, **settings):
    """Point database app at `url` for new connections, with test-sized timings unless given."""
    values = {"jwks_url": url, "jwks_max_age": "60s", "jwks_cooldown": "1s", "jwks_stale_if_error": "15min", **settings}
    with connect("postgres", port=server.port) as su:
        for k, v in values.items():
            su.execute(f"ALTER DATABASE app SET auth_jwt.{k} = '{v}'")


def first_verification(server, tok):
    with server.connect() as c:
        return verify(c, tok)


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("RssAnon:"))


def test_new_connections_read_the_shared_document_and_make_no_request(server, endpoint):
    use(server, endpoint.url)
    with server.connect() as c:
        assert one(c, "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'auth_jwt jwks'") == 1
        assert verify(c, token(3)) == "user3"
        listed = c.execute("SELECT kid, source, fetched_at IS NOT NULL FROM auth_jwt.jwks_keys() ORDER BY kid").fetchall()
        assert listed == [("k3", endpoint.host, True), ("k4", endpoint.host, True)]
    assert endpoint.count() == 1
    # Fifty new connections, each verifying at once: the document is already in shared memory.
    for i in range(50):
        assert first_verification(server, token(3 + i % 2)) == f"user{3 + i % 2}"
    assert endpoint.count() == 1, "no new connection asked the endpoint"
    # And no backend fetched for itself: the per-backend counter stays at zero.
    with server.connect() as c:
        assert verify(c, token(4)) == "user4"
        assert one(c, "SELECT jwks_fetches FROM auth_jwt.stats()") == 0


def test_concurrent_first_requests_and_a_restart_make_one_request_each(server, endpoint):
    use(server, endpoint.url)
    endpoint.set(delay=0.3)
    results = []
    threads = [threading.Thread(target=lambda: results.append(first_verification(server, token(3)))) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["user3"] * 10
    assert endpoint.count() == 1, "ten backends waited for the one request"
    server.restart()
    threads = [threading.Thread(target=lambda: results.append(first_verification(server, token(4)))) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results[10:] == ["user4"] * 10
    assert endpoint.count() == 2, "the restarted server fetched once"


def test_an_outage_is_survived_by_new_connections_for_stale_if_error(server, endpoint):
    use(server, endpoint.url, jwks_max_age="2s", jwks_stale_if_error="5s")
    assert first_verification(server, token(3)) == "user3"
    fetched = time.monotonic()
    endpoint.set(status=503)
    time.sleep(2.5)
    # Past max age, the endpoint failing: a connection opened now verifies with the last good keys.
    assert first_verification(server, token(3)) == "user3"
    assert first_verification(server, token(4)) == "user4"
    assert "using them under auth_jwt.jwks_stale_if_error while fetching fails: HTTP 503" in server.log()
    time.sleep(max(0.0, fetched + 5.5 - time.monotonic()))
    state, message, detail = first_verification(server, token(3))
    assert (state, message) == ("58000", f"auth_jwt cannot fetch keys from {endpoint.host}")
    assert "longer than auth_jwt.jwks_stale_if_error allows" in detail and "HTTP 503" in detail, detail
    # One retry per cooldown (1 s) at most, however many connections asked.
    assert 2 <= endpoint.count() <= 2 + int(time.monotonic() - fetched)
    # Back up: the next retry serves every backend again.
    endpoint.set(status=200)
    time.sleep(1.1)
    assert first_verification(server, token(3)) == "user3"


def test_a_removed_key_is_refused_by_every_backend_within_max_age(server, endpoint):
    use(server, endpoint.url, jwks_max_age="3s")
    backends = [server.connect() for _ in range(5)]
    t4 = token(4)  # the same token throughout: each backend has it in its token cache
    for c in backends:
        assert verify(c, t4) == "user4"
    endpoint.set(doc(entry(3)))
    for c in backends:
        assert verify(c, t4) == "user4", "still within max age"
    time.sleep(3.2)
    for c in backends:
        state, message, _ = verify(c, t4)
        assert state == "28000", message
        assert verify(c, token(3)) == "user3"
    assert first_verification(server, token(4))[0] == "28000"
    for c in backends:
        c.close()


def test_an_added_key_costs_one_request_for_every_backend(server, endpoint):
    use(server, endpoint.url, jwks_cooldown="1s")
    backends = [server.connect() for _ in range(5)]
    for c in backends:
        assert verify(c, token(3)) == "user3"
    assert endpoint.count() == 1
    endpoint.set(doc(entry(3), entry(4), entry(5)))
    time.sleep(1.1)
    for c in backends:
        assert verify(c, token(5)) == "user5"
    assert first_verification(server, token(5)) == "user5"
    assert endpoint.count() == 2, "one unknown-kid fetch served every backend"
    # Within the cooldown another unknown kid costs nothing and is refused.
    assert backends[0].execute("SELECT 1") and verify(backends[0], token(6))[0] == "28000"
    assert endpoint.count() == 2
    for c in backends:
        c.close()


def test_a_cancelled_wait_leaves_the_fetch_to_the_worker(server, endpoint):
    use(server, endpoint.url, jwks_timeout="5s")
    endpoint.set(delay=1.5)
    with server.connect() as c:
        c.execute("SET statement_timeout = '200ms'")
        state, _, _ = verify(c, token(3))
        assert state == "57014"
        c.execute("RESET statement_timeout")
        time.sleep(1.6)
        assert verify(c, token(3)) == "user3"
    assert first_verification(server, token(4)) == "user4"
    assert endpoint.count() == 1, "the cancelled wait bought no request"


def test_a_url_change_reaches_every_backend_at_its_next_transaction(server, endpoint):
    other = Endpoint()
    other.set(doc(entry(5)))
    try:
        use(server, endpoint.url)
        with connect("postgres", port=server.port) as su:
            su.execute("ALTER DATABASE app RESET auth_jwt.jwks_url")
            su.execute(f"ALTER SYSTEM SET auth_jwt.jwks_url = '{endpoint.url}'")
            su.execute("SELECT pg_reload_conf()")
        time.sleep(0.3)
        backends = [server.connect() for _ in range(3)]
        for c in backends:
            assert verify(c, token(3)) == "user3"
        with connect("postgres", port=server.port) as su:
            su.execute(f"ALTER SYSTEM SET auth_jwt.jwks_url = '{other.url}'")
            su.execute("SELECT pg_reload_conf()")
        time.sleep(0.3)
        for c in backends:
            assert one(c, "SHOW auth_jwt.jwks_url") == other.url
            assert verify(c, token(3))[0] == "28000", "k3 is not in the new URL's document"
            assert verify(c, token(5)) == "user5"
        assert (endpoint.count(), other.count()) == (1, 1)
        for c in backends:
            c.close()
    finally:
        with connect("postgres", port=server.port) as su:
            su.execute("ALTER SYSTEM RESET auth_jwt.jwks_url")
            su.execute("SELECT pg_reload_conf()")
        other.close()


def test_parallel_workers_read_the_shared_document(server, endpoint):
    """Workers start with empty caches; with preload they read the shared document instead of
    refusing (test_jwks_url.py: without preload they must not fetch)."""
    use(server, endpoint.url)
    c = server.connect()
    c.execute("CREATE TABLE toks AS SELECT i, %s::text AS tok FROM generate_series(1, 5000) i", (token(3),))
    c.execute("ANALYZE toks")
    c.execute("ALTER FUNCTION auth_jwt.jwt_verify(text) PARALLEL SAFE")
    try:
        for s in ("max_parallel_workers_per_gather = 2", "parallel_setup_cost = 0", "parallel_tuple_cost = 0",
                  "min_parallel_table_scan_size = 0", "parallel_leader_participation = off"):
            c.execute(f"SET {s}")
        q = "SELECT count(auth_jwt.jwt_verify(tok)) FROM toks"
        plan = "\n".join(r[0] for r in c.execute(f"EXPLAIN (ANALYZE, VERBOSE) {q}").fetchall())
        assert "Workers Launched: 2" in plan, plan
        for _ in range(5):
            assert one(c, q) == 5000
        assert endpoint.count() == 1, "the workers read the document the first worker's request brought"
    finally:
        c.execute("ALTER FUNCTION auth_jwt.jwt_verify(text) PARALLEL RESTRICTED")
        c.execute("DROP TABLE toks")
        c.close()


def test_memory_is_bounded_across_a_thousand_url_switches(server, endpoint):
    use(server, endpoint.url)
    with server.connect() as c:
        worker = one(c, "SELECT pid FROM pg_stat_activity WHERE backend_type = 'auth_jwt jwks'")
        backend = one(c, "SELECT pg_backend_pid()")
        sizes = {}
        for i in range(1000):
            c.execute(f"SET auth_jwt.jwks_url = '{endpoint.url}?switch={i}'")
            assert verify(c, token(3 + i % 2)) == f"user{3 + i % 2}"
            if i in (99, 999):
                sizes[i] = (rss_kb(backend), rss_kb(worker))
        assert endpoint.count() == 1000, "each URL fetched once, by the worker"
        grown = (sizes[999][0] - sizes[99][0], sizes[999][1] - sizes[99][1])
        assert grown[0] < 4096 and grown[1] < 4096, f"memory grew by {grown} kB over 900 URL switches"


def test_a_hot_standby_has_its_own_shared_cache(server, endpoint):
    use(server, endpoint.url)
    standby = Cluster(STANDBY_PORT)
    os.rmdir(standby.data)  # pg_basebackup makes it, as postgres
    pg(f"{PGBIN}/pg_basebackup", "-h", os.environ["PGHOST"], "-p", str(server.port), "-U", "postgres",
       "-D", standby.data, "-R", "-X", "stream")
    standby.conf("hot_standby = on")
    standby.start()
    try:
        for _ in range(100):
            try:
                with standby.connect() as c:
                    assert one(c, "SELECT pg_is_in_recovery()")
                    break
            except psycopg.OperationalError:
                time.sleep(0.1)
        before = endpoint.count()
        for i in range(5):
            with standby.connect() as c:
                assert verify(c, token(3 + i % 2)) == f"user{3 + i % 2}"
                assert one(c, "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'auth_jwt jwks'") == 1
        assert endpoint.count() == before + 1, "the standby's worker fetched once for all its backends"
    finally:
        standby.stop()


def test_a_document_larger_than_the_shared_room_is_refused_with_that_reason(server, endpoint):
    use(server, endpoint.url, jwks_max_size="1MB")
    endpoint.set(json.dumps({"keys": [entry(3)], "pad": "x" * 100_000}).encode())
    state, message, detail = first_verification(server, token(3))
    assert (state, message) == ("58000", f"auth_jwt cannot fetch keys from {endpoint.host}")
    assert "larger than the shared cache's room for one document (auth_jwt.jwks_max_size when the server started) (65536 bytes)" in detail, detail


def tenants(server, n, url_of, **settings):
    """n databases, each pointed at its own URL: [(name, connection)]."""
    out = []
    for i in range(n):
        name = f"tenant{i}"
        with connect("postgres", port=server.port) as su:
            su.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            su.execute(f"CREATE DATABASE {name}")
        with connect(name, port=server.port) as su:
            su.execute("CREATE EXTENSION auth_jwt")
            values = {"jwks_url": url_of(i), "jwks_max_age": "60s", "jwks_cooldown": "30s", **settings}
            for k, v in values.items():
                su.execute(f"ALTER DATABASE {name} SET auth_jwt.{k} = '{v}'")
        out.append((name, connect(name, port=server.port)))
    return out


def drop_tenants(server, conns):
    for name, c in conns:
        c.close()
        with connect("postgres", port=server.port) as su:
            su.execute(f"DROP DATABASE {name} WITH (FORCE)")


def test_more_urls_in_use_than_slots_do_not_evict_each_other(server, endpoint):
    """Four slots: a fifth and sixth URL in use are served per backend (each backend fetches them
    once) instead of evicting a slot in use, which would make the URLs evict each other in turn,
    a request per verification (red-team finding, round 14)."""
    conns = tenants(server, 6, lambda i: f"{endpoint.url}?tenant={i}")
    try:
        for _ in range(20):
            for _, c in conns:
                assert verify(c, token(3)) == "user3"
        # Whatever the other tests left in the slots (idle within their max age or not), each URL
        # was fetched once: by the worker for a slot, or by its one backend.
        assert endpoint.count() == 6, endpoint.count()
        fetched_by_backends = sum(one(c, "SELECT jwks_fetches FROM auth_jwt.stats()") for _, c in conns)
        assert fetched_by_backends >= 2, "at most four URLs share a slot"
    finally:
        drop_tenants(server, conns)


def test_past_max_age_only_the_servers_last_good_document_is_served(server, endpoint):
    """A backend's older copy is never served stale: here the server fetched a document without
    k4, then the endpoint failed, then the slot went idle and another URL took it (red-team
    finding, round 14: the backend went on verifying k4 from its own older copy)."""
    use(server, endpoint.url, jwks_max_age="2s", jwks_stale_if_error="15min")
    x, y = server.connect(), server.connect()
    assert verify(x, token(4)) == "user4"
    endpoint.set(doc(entry(3)))
    time.sleep(2.1)
    assert verify(y, token(4))[0] == "28000", "the server now holds the document without k4"
    endpoint.set(status=503)
    time.sleep(2.1)
    # Other URLs take every slot now that this one is idle.
    others = tenants(server, 4, lambda i: f"{endpoint.url}?other={i}")
    try:
        endpoint.set(doc(entry(3)))
        for _, c in others:
            assert verify(c, token(3)) == "user3"
        endpoint.set(status=503)
        assert verify(x, token(4)) != "user4", "k4 was removed from the endpoint's document"
    finally:
        drop_tenants(server, others)
        x.close()
        y.close()


def test_a_terminated_worker_is_restarted_and_waited_for(server, endpoint):
    use(server, endpoint.url)
    with server.connect() as c:
        old = one(c, "SELECT pid FROM pg_stat_activity WHERE backend_type = 'auth_jwt jwks'")
        assert one(c, "SELECT pg_terminate_backend(%s)", old)
    # A verification during the restart waits for the new worker (restarted a second later).
    assert first_verification(server, token(3)) == "user3"
    with server.connect() as c:
        new = one(c, "SELECT pid FROM pg_stat_activity WHERE backend_type = 'auth_jwt jwks'")
    assert new is not None and new != old


class Fillers:
    """Connections to other databases, each verifying with its own URL every 0.3 s in a thread of
    its own, so that the slots they hold stay in use: start(i), stop(i)."""

    def __init__(self, server, endpoint, n):
        self.conns = tenants(server, n, lambda i: f"{endpoint.url}?filler={i}", jwks_max_age="2s", jwks_cooldown="1s")
        self.stops = [threading.Event() for _ in range(n)]
        self.threads = [None] * n

    def start(self, i):
        self.stops[i].clear()

        def run():
            c = self.conns[i][1]
            while not self.stops[i].is_set():
                verify(c, token(3))
                time.sleep(0.3)

        self.threads[i] = threading.Thread(target=run, daemon=True)
        self.threads[i].start()
        time.sleep(0.5)

    def stop(self, i):
        self.stops[i].set()
        self.threads[i].join()

    def close(self, server):
        for i, t in enumerate(self.threads):
            if t is not None and t.is_alive():
                self.stop(i)
        drop_tenants(server, self.conns)


def test_a_token_verified_by_a_backend_fetching_for_itself_is_dropped_when_it_takes_a_slot(server, endpoint):
    """A backend switching from its own fetches to the server's document drops the tokens it
    verified under its own (red-team, round 15: the server's document equalled the copy the
    backend had held before, so its set counted as unchanged and a removed key's token kept
    verifying from the token cache until its exp)."""
    use(server, endpoint.url, jwks_max_age="2s", jwks_cooldown="1s")
    endpoint.set(doc(entry(3)))
    fillers = Fillers(server, endpoint, 4)
    x = server.connect()
    t4 = token(4)  # one token, so that the second verification may come from the token cache
    try:
        assert verify(x, token(3)) == "user3"  # the server's {k3}, in a slot
        for i in range(3):
            fillers.start(i)
        time.sleep(2.2)  # x's slot idle past max age
        fillers.start(3)  # takes it
        endpoint.set(doc(entry(3), entry(4)))
        assert verify(x, t4) == "user4"  # no slot: x fetches {k3, k4} for itself
        assert one(x, "SELECT jwks_fetches FROM auth_jwt.stats()") == 1
        endpoint.set(doc(entry(3)))  # k4 removed
        fillers.stop(3)
        time.sleep(2.2)  # its slot idle, x's own document past max age
        state, _, _ = verify(x, t4)
        assert state == "28000", "the removed key's token is refused, as the server's document says"
        assert [r[0] for r in x.execute("SELECT kid FROM auth_jwt.jwks_keys()").fetchall()] == ["k3"]
    finally:
        x.close()
        fillers.close(server)


def test_an_outage_never_serves_a_backends_own_document_older_than_the_servers(server, endpoint):
    """Stale-if-error serves the server's last good document, also through a switch to fetching
    for itself (red-team, round 15: the backend served its own older document, with a key the
    server's document no longer had)."""
    use(server, endpoint.url, jwks_max_age="2s", jwks_cooldown="1s", jwks_stale_if_error="15min")
    endpoint.set(doc(entry(3)))
    fillers = Fillers(server, endpoint, 4)
    x = server.connect()
    try:
        for i in range(4):
            fillers.start(i)
        endpoint.set(doc(entry(3), entry(4)))
        assert verify(x, token(4)) == "user4"  # every slot in use: x fetches {k3, k4} itself
        endpoint.set(doc(entry(3)))  # k4 removed
        fillers.stop(3)
        time.sleep(2.2)
        assert verify(x, token(4))[0] == "28000"  # x takes the free slot: the server's {k3}
        time.sleep(2.2)  # x idle: its slot too
        fillers.start(3)  # takes it
        endpoint.set(status=500)
        assert verify(x, token(4)) != "user4", "k4 was removed before the outage"
    finally:
        x.close()
        fillers.close(server)


def test_a_function_that_sets_another_url_costs_no_request_per_call(server, endpoint):
    """A SECURITY DEFINER function with SET auth_jwt.jwks_url, called on every row beside the
    caller's own URL: each URL is fetched once, whether it has a slot or is fetched by the
    backend itself (red-team, round 16: switching forgot the other URL's cooldown, a request per
    call, 49 in one statement)."""
    other, filling = Endpoint(), Endpoint()
    other.set(doc(entry(5)))
    filling.set(doc(entry(3)))
    fillers = Fillers(server, filling, 3)  # their own endpoint: they refresh while the test counts
    try:
        use(server, endpoint.url)
        with server.connect() as su:
            su.execute(f"""CREATE FUNCTION public.verify_other(t text) RETURNS text LANGUAGE sql SECURITY DEFINER
                           SET auth_jwt.jwks_url = '{other.url}' AS $$ SELECT auth_jwt.jwt_verify(t)->>'sub' $$""")
        x = server.connect()
        assert verify(x, token(3)) == "user3"  # the fourth slot
        for i in range(3):
            fillers.start(i)  # the others: the function's URL is fetched by x itself
        before = endpoint.count()
        rows = x.execute("SELECT public.verify_other(%s), auth_jwt.jwt_verify(%s)->>'sub' FROM generate_series(1, 30)",
                         (token(5), token(3))).fetchall()
        assert rows == [("user5", "user3")] * 30
        assert (other.count(), endpoint.count() - before) == (1, 0)
        assert one(x, "SELECT jwks_fetches FROM auth_jwt.stats()") == 1, "the function's URL, once, by x"
        x.close()
    finally:
        fillers.close(server)
        other.close()
        filling.close()
        with server.connect() as su:
            su.execute("DROP FUNCTION IF EXISTS public.verify_other(text)")


def test_a_failure_under_another_databases_bounds_opens_no_stale_window(server, endpoint):
    """Two databases share a URL with different jwks_timeout: each has its own slot, so the other's
    shorter timeout failing is never this one's failure (red-team, round 18: the slot kept the
    last backend's bounds, the worker's refresh timed out under them, and a removed key kept
    verifying past max age under stale-if-error)."""
    endpoint.set(doc(entry(3), entry(4)), delay=0.5)
    use(server, endpoint.url, jwks_max_age="4s", jwks_cooldown="3s", jwks_timeout="2s")
    with connect("postgres", port=server.port) as su:
        su.execute("DROP DATABASE IF EXISTS app2 WITH (FORCE)")
        su.execute("CREATE DATABASE app2")
    with connect("app2", port=server.port) as su:
        su.execute("CREATE EXTENSION auth_jwt")
        for k, v in {"jwks_url": endpoint.url, "jwks_max_age": "4s", "jwks_cooldown": "3s", "jwks_timeout": "100ms"}.items():
            su.execute(f"ALTER DATABASE app2 SET auth_jwt.{k} = '{v}'")
    a, b = server.connect(), connect("app2", port=server.port)
    try:
        t4 = token(4)
        assert verify(a, t4) == "user4"
        verify(b, t4)  # its own bounds: times out, in a slot of its own
        endpoint.set(doc(entry(3)), delay=0.5)  # k4 removed
        removed = time.monotonic()
        last = None
        while time.monotonic() - removed < 6.5:
            if verify(a, token(4)) == "user4":
                last = time.monotonic() - removed
            verify(b, t4)
            time.sleep(0.2)
        assert last is not None and last < 4.0 + 0.5 + 0.5, f"k4 verified {last:.1f} s after its removal (max age 4 s)"
    finally:
        a.close()
        b.close()
        with connect("postgres", port=server.port) as su:
            su.execute("DROP DATABASE app2 WITH (FORCE)")


@contextlib.contextmanager
def fetching_for_itself(server, endpoint):
    """Every slot held by a filler (of `endpoint`), and a backend verifying with a URL of its own
    ({k5}, max age 2 s), which it therefore fetches itself: yields (backend, its URL's endpoint,
    the fillers)."""
    own = Endpoint()
    own.set(doc(entry(5)))
    fillers = Fillers(server, endpoint, 4)
    try:
        for i in range(4):
            fillers.start(i)
        use(server, own.url, jwks_max_age="2s", jwks_cooldown="1s")
        with server.connect() as x:
            assert verify(x, token(5)) == "user5"
            assert one(x, "SELECT jwks_fetches FROM auth_jwt.stats()") == 1, "fetched by x itself"
            yield x, own, fillers
    finally:
        fillers.close(server)
        own.close()


def test_jwks_keys_lists_the_document_verification_used(server, endpoint):
    """A URL fetched by the backend itself (every slot in use), past max age during an outage:
    jwks_keys() lists that document, as verification uses it (red-team, round 18: it listed the
    copy of another URL's slot, or failed with an internal error)."""
    with fetching_for_itself(server, endpoint) as (x, own, _):
        own.set(status=500)
        time.sleep(2.2)
        assert verify(x, token(5)) == "user5"  # stale, the endpoint failing
        assert x.execute("SELECT kid, source FROM auth_jwt.jwks_keys()").fetchall() == [("k5", own.host)]

def test_switching_bounds_never_serves_an_older_document_stale(server, endpoint):
    """A backend whose jwks_timeout changes uses another slot (slots are keyed by their fetch's
    bounds); after it has seen a newer document in one, it never serves another's older one as
    stale (red-team, round 19: the removed key verified again, 11-19 s after its removal at a 2 s
    max age)."""
    use(server, endpoint.url, jwks_max_age="2s", jwks_cooldown="1s", jwks_stale_if_error="15min")
    x = server.connect()
    try:
        x.execute("SET auth_jwt.jwks_timeout = '200ms'")
        assert verify(x, token(4)) == "user4"  # slot Y: {k3, k4}
        endpoint.set(doc(entry(3)), delay=1.0)  # k4 removed; Y's fetches now time out
        time.sleep(2.3)
        x.execute("SET auth_jwt.jwks_timeout = '5s'")
        assert verify(x, token(4))[0] == "28000"  # slot X: {k3}, seen
        time.sleep(2.3)
        x.execute("SET auth_jwt.jwks_timeout = '200ms'")
        assert verify(x, token(4)) != "user4", "Y's older document, with k4, served as stale"
    finally:
        x.close()


def test_a_url_back_in_a_slot_is_listed_from_it_without_a_request(server, endpoint):
    """A URL the backend fetched itself, then got a slot for, then left for another URL: back on
    it, verification and jwks_keys() both use the slot's document, and the backend asks nothing
    itself (red-team, round 19: an emptied per-backend entry made it count as fetched by the
    backend, and jwks_keys() fetched, and failed, on its own)."""
    with fetching_for_itself(server, endpoint) as (x, a, fillers):
        fillers.stop(3)
        time.sleep(2.2)
        assert verify(x, token(5)) == "user5"  # its own document past max age: it takes the free slot
        x.execute(f"SET auth_jwt.jwks_url = '{endpoint.url}?other'")
        assert verify(x, token(3)) == "user3"  # no free slot: fetched by x itself
        x.execute("RESET auth_jwt.jwks_url")
        a.set(status=503)
        assert verify(x, token(5)) == "user5"  # the slot's document, fresh
        assert x.execute("SELECT kid FROM auth_jwt.jwks_keys()").fetchall() == [("k5",)]
        assert one(x, "SELECT jwks_fetches FROM auth_jwt.stats()") == 2, "its own first fetch, and the other URL's"


def test_a_slot_document_older_than_the_backends_own_is_never_served_stale(server, endpoint):
    """A backend that fetched a URL itself (under other bounds, for want of a slot) and then uses
    the URL's slot again never serves the slot's older document as stale (red-team, round 20: the
    key removed between the two verified again, the newer key was refused)."""
    filling = Endpoint()
    filling.set(doc(entry(3)))
    fillers = Fillers(server, filling, 3)
    use(server, endpoint.url, jwks_max_age="2s", jwks_cooldown="1s", jwks_timeout="5s", jwks_stale_if_error="15min")
    x = server.connect()
    try:
        for i in range(3):
            fillers.start(i)
        assert verify(x, token(4)) == "user4"  # the fourth slot: {k3, k4}
        endpoint.set(doc(entry(3), entry(5)))  # k4 removed, k5 added
        x.execute("SET auth_jwt.jwks_timeout = '4s'")  # other bounds: no slot, x fetches itself
        assert verify(x, token(5)) == "user5"
        assert verify(x, token(4))[0] == "28000"
        endpoint.set(status=500)
        x.execute("RESET auth_jwt.jwks_timeout")
        time.sleep(2.3)
        assert verify(x, token(4)) != "user4", "the slot's older document, with k4, served as stale"
    finally:
        x.close()
        fillers.close(server)
        filling.close()
