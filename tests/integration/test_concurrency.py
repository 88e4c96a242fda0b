"""Key and session changes under concurrent load: several backends verify, explicitly and through
an RLS policy, while another session swaps a key's "publicKey" under the same kid, deletes the key
and re-inserts it, over and over (or, with require_session on, signs a session out, ends it early,
gives it to another user, re-inserts and refreshes it). Every answer given in a transaction that
began after a change's commit had returned (and saw no further change) is checked against the state
committed then: there must be no wrong answer, in either direction (a removed key or ended session
accepted, a current one refused).
"""

import random
import threading
import time

import psycopg

from conftest import connect, jwk, token, user_uuid

CHANGES = 240
VERIFIERS = 6


class Clock:
    """The state committed most recently, as (change number, state index, a change is under way).
    A change is under way from before its statement is sent until its commit has returned: its
    commit may already be visible to other transactions in that window."""

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


def controller(db, clock, done, tallies, n_states, change):
    """Enter the next state CHANGES times (`change(conn, state)`). Most changes wait until the
    verifiers have given a dozen unambiguous answers under the current state (so slow builds, such
    as PostgreSQL with assertions, still check enough); every fourth follows at once, to stress
    the interleaving."""
    c = connect(db)
    for n in range(CHANGES):
        if n % 4:
            start, deadline = checked(tallies), time.monotonic() + 2
            while checked(tallies) < start + 12 and time.monotonic() < deadline:
                time.sleep(0.002)
        state = (n + 1) % n_states
        clock.begin_change()
        with c.transaction():
            change(c, state)
        clock.committed(state)
    done.set()


def verifier(db, clock, done, via_policy, tally, tokens, passes):
    """Verify a random token of `tokens` (label -> token, all user1's) per transaction, explicitly
    or through the policy; `passes(state, label)` says whether it must pass in that state."""
    c = connect(db, user="authenticator" if via_policy else "postgres", autocommit=False)
    while not done.is_set():
        label = random.choice(list(tokens))
        before = clock.read()
        try:
            if via_policy:
                c.execute("SET LOCAL ROLE authenticated")
                c.execute("SELECT set_config('auth_jwt.token', %s, true)", (tokens[label],))
                ok = c.execute("SELECT title FROM tasks").fetchall() == [("task of user1",)]
            else:
                ok = c.execute("SELECT auth_jwt.jwt_verify(%s)->>'sub'", (tokens[label],)).fetchone()[0] == "user1"
            c.commit()
        except psycopg.Error as e:
            c.rollback()
            assert e.sqlstate == "28000", e
            ok = e.diag.message_primary
        if before[2] or clock.read() != before:
            tally["ambiguous"] += 1  # a change may have committed while this transaction ran
            continue
        tally["checked"] += 1
        if (ok is True) != passes(before[1], label):
            tally["wrong"].append((before, label, "policy" if via_policy else "jwt_verify", ok))


def no_wrong_answer(db, n_states, change, tokens, passes):
    clock, done = Clock(), threading.Event()
    tallies = [{"checked": 0, "ambiguous": 0, "wrong": []} for _ in range(VERIFIERS)]
    threads = [threading.Thread(target=verifier, args=(db, clock, done, i % 2 == 1, tallies[i], tokens, passes))
               for i in range(VERIFIERS)]
    for t in threads:
        t.start()
    controller(db, clock, done, tallies, n_states, change)
    for t in threads:
        t.join()
    total = checked(tallies)
    wrong = [w for t in tallies for w in t["wrong"]]
    print(f"{total} answers checked, {sum(t['ambiguous'] for t in tallies)} ambiguous, {len(wrong)} wrong")
    assert total >= 500, tallies
    assert all(t["checked"] >= 50 for t in tallies), "every verifier, explicit and through RLS, was checked"
    assert wrong == [], wrong[:20]


# What the key table holds for kid k1, in the order the controller cycles through, and which
# signer's token must verify in each state.
KEY_STATES = [("seed 1", 1), ("seed 5", 5), ("deleted", None)]


def test_no_wrong_answer_while_a_key_is_swapped_deleted_and_reinserted(app_db):
    def change(c, state):
        name = KEY_STATES[state][0]
        if name == "seed 5":
            c.execute("UPDATE jwks SET \"publicKey\" = %s WHERE id = 'k1'", (jwk(5),))
        elif name == "deleted":
            c.execute("DELETE FROM jwks WHERE id = 'k1'")
        else:
            c.execute("INSERT INTO jwks VALUES ('k1', %s, 'x', now(), NULL, 'EdDSA', 'Ed25519')", (jwk(1),))

    tokens = {1: token(1, kid="k1"), 5: token(5, kid="k1", sub="user1", uuid=user_uuid(1))}
    no_wrong_answer(app_db, len(KEY_STATES), change, tokens, lambda state, signer: KEY_STATES[state][1] == signer)


# Session s1's states, in the order the controller cycles through them (the statement that
# enters each), and whether its token must pass. Session s2 stays live throughout and is
# refreshed at every change: it must never be refused.
SESSION_STATES = [
    ("refreshed", "UPDATE session SET \"expiresAt\" = \"expiresAt\" + interval '1 hour', \"updatedAt\" = now() WHERE id = 's1'", True),
    ("signed out", "DELETE FROM session WHERE id = 's1'", False),
    ("signed in again", "INSERT INTO session (id, \"expiresAt\", token, \"updatedAt\", \"userId\") "
     "VALUES ('s1', now() + interval '1 day', 'secret-s1', now(), 'user1')", True),
    ("ended early", "UPDATE session SET \"expiresAt\" = now() - interval '1 second' WHERE id = 's1'", False),
    ("revived", "UPDATE session SET \"expiresAt\" = now() + interval '1 day' WHERE id = 's1'", True),
    ("another user's", "UPDATE session SET \"userId\" = 'user2' WHERE id = 's1'", False),
    ("given back", "UPDATE session SET \"userId\" = 'user1' WHERE id = 's1'", True),
]


def test_no_wrong_answer_while_sessions_are_signed_out_refreshed_and_reinserted(app_db):
    """require_session keeps live sessions between transactions: under concurrent sign-outs,
    early ends, user changes, re-insertions and refreshes, no transaction that began after a
    change's commit returned accepts an ended session or refuses a live one."""
    with connect(app_db) as su:
        for sid in ("s1", "s2"):
            su.execute("INSERT INTO session (id, \"expiresAt\", token, \"updatedAt\", \"userId\") "
                       "VALUES (%s, now() + interval '1 day', %s, now(), 'user1')", (sid, f"secret-{sid}"))
        su.execute(f"ALTER DATABASE {app_db} SET auth_jwt.require_session = on")

    def change(c, state):
        c.execute(SESSION_STATES[state][1])
        c.execute("UPDATE session SET \"expiresAt\" = \"expiresAt\" + interval '1 second', \"updatedAt\" = now() WHERE id = 's2'")

    tokens = {sid: token(1, claims=f'{{"sid":"{sid}"}}') for sid in ("s1", "s2")}
    no_wrong_answer(app_db, len(SESSION_STATES), change, tokens, lambda state, sid: sid == "s2" or SESSION_STATES[state][2])
