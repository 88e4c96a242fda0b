"""Key changes under concurrent load: several backends verify, explicitly and through an RLS
policy, while another session swaps a key's "publicKey" under the same kid, deletes the key and
re-inserts it, over and over. Every answer given in a transaction that began after a change's
commit had returned (and saw no further change) is checked against the key set committed then:
there must be no wrong answer, in either direction (a removed key accepted, a current one refused).
"""

import random
import threading
import time

import psycopg

from conftest import connect, jwk, token, user_uuid

# What the key table holds for kid k1, in the order the controller cycles through, and which
# signer's token must verify in each state.
STATES = [("seed 1", 1), ("seed 5", 5), ("deleted", None)]
CHANGES = 240
VERIFIERS = 6


class Clock:
    """The key state committed most recently, as (change number, state index, a change is
    under way). A change is under way from before its statement is sent until its commit has
    returned: its commit may already be visible to other transactions in that window."""

    def __init__(self):
        self.lock = threading.Lock()
        self.now = (0, 0, False)

    def read(self):
        with self.lock:
            return self.now

    def begin_change(self):
        with self.lock:
            self.now = (self.now[0], self.now[1], True)

    def committed(self, state):
        with self.lock:
            self.now = (self.now[0] + 1, state, False)


def checked(tallies):
    return sum(t["checked"] for t in tallies)


def controller(db, clock, done, tallies):
    """Change the key CHANGES times. Most changes wait until the verifiers have given a dozen
    unambiguous answers under the current state (so slow builds, such as PostgreSQL with
    assertions, still check enough); every fourth follows at once, to stress the interleaving."""
    c = connect(db)
    for n in range(CHANGES):
        if n % 4:
            start, deadline = checked(tallies), time.monotonic() + 2
            while checked(tallies) < start + 12 and time.monotonic() < deadline:
                time.sleep(0.002)
        state = (n + 1) % len(STATES)
        name, seed = STATES[state]
        clock.begin_change()
        if name == "seed 5":
            c.execute("UPDATE jwks SET \"publicKey\" = %s WHERE id = 'k1'", (jwk(5),))
        elif name == "deleted":
            c.execute("DELETE FROM jwks WHERE id = 'k1'")
        else:
            c.execute("INSERT INTO jwks VALUES ('k1', %s, 'x', now(), NULL, 'EdDSA', 'Ed25519')", (jwk(1),))
        clock.committed(state)
    done.set()


def verifier(db, clock, done, via_policy, tally):
    tokens = {1: token(1, kid="k1"), 5: token(5, kid="k1", sub="user1", uuid=user_uuid(1))}
    c = connect(db, user="authenticator" if via_policy else "postgres", autocommit=False)
    while not done.is_set():
        signer = random.choice((1, 5))
        before = clock.read()
        try:
            if via_policy:
                c.execute("SET LOCAL ROLE authenticated")
                c.execute("SELECT set_config('auth_jwt.token', %s, true)", (tokens[signer],))
                ok = c.execute("SELECT title FROM tasks").fetchall() == [("task of user1",)]
            else:
                ok = c.execute("SELECT auth_jwt.jwt_verify(%s)->>'sub'", (tokens[signer],)).fetchone()[0] == "user1"
            c.commit()
        except psycopg.Error as e:
            c.rollback()
            assert e.sqlstate == "28000", e
            ok = e.diag.message_primary
        if before[2] or clock.read() != before:
            tally["ambiguous"] += 1  # a change may have committed while this transaction ran
            continue
        expected = STATES[before[1]][1] == signer
        tally["checked"] += 1
        if (ok is True) != expected:
            tally["wrong"].append((before, signer, "policy" if via_policy else "jwt_verify", ok))


def test_no_wrong_answer_while_a_key_is_swapped_deleted_and_reinserted(app_db):
    clock, done = Clock(), threading.Event()
    tallies = [{"checked": 0, "ambiguous": 0, "wrong": []} for _ in range(VERIFIERS)]
    threads = [threading.Thread(target=verifier, args=(app_db, clock, done, i % 2 == 1, tallies[i]))
               for i in range(VERIFIERS)]
    for t in threads:
        t.start()
    controller(app_db, clock, done, tallies)
    for t in threads:
        t.join()
    total = checked(tallies)
    wrong = [w for t in tallies for w in t["wrong"]]
    print(f"{total} answers checked, {sum(t['ambiguous'] for t in tallies)} ambiguous, {len(wrong)} wrong")
    assert total >= 500, tallies
    assert all(t["checked"] >= 50 for t in tallies), "every verifier, explicit and through RLS, was checked"
    assert wrong == [], wrong[:20]
