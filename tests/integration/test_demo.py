"""scripts/demo prints what the README promises."""

import os
import re
import subprocess

import pytest

from conftest import ROOT


@pytest.mark.skipif(not os.environ.get("AUTH_JWT_DEMO_ARGS") and "/15/" not in os.environ.get("PGBIN", "/15/"),
                    reason="the demo runs on PostgreSQL 15 (run once, with the 15 tests)")
def test_demo_shows_accepted_and_refused_tokens_and_rls():
    """AUTH_JWT_DEMO_ARGS=--installed runs it against an installed package instead of a build, on
    the server whose pg_config is AUTH_JWT_DEMO_PG_CONFIG (Debian's 15 by default)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG") and k != "AUTH_JWT_MAJORS"}
    if os.environ.get("AUTH_JWT_DEMO_PG_CONFIG"):
        env["PG_CONFIG"] = os.environ["AUTH_JWT_DEMO_PG_CONFIG"]
    args = os.environ.get("AUTH_JWT_DEMO_ARGS", "").split()
    out = subprocess.run([os.path.join(ROOT, "scripts", "demo"), *args], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    text = re.sub(r"\x1b\[[0-9;]*m", "", out.stdout)
    sections = dict(re.findall(r"-- (.+)\n((?:   .*\n?)*)", text))
    assert '"sub": "user1"' in sections["A valid token: the claims, exactly as signed"]
    assert "ERROR:  invalid token signature" in sections["A token signed by another key under k1's id: refused"]
    assert "ERROR:  token has expired" in sections["An expired token: refused, with what to do"]
    assert "HINT:  The client must refresh" in sections["An expired token: refused, with what to do"]
    assert "k1  | EdDSA | Ed25519 | usable" in sections["What auth_jwt sees in the key table"]
    ada = sections["Row-level security: Ada's token sees Ada's task only"]
    assert "Ada's task" in ada and "Bob's task" not in ada
    bob = sections["Bob's token sees Bob's task only"]
    assert "Bob's task" in bob and "Ada's task" not in bob
    assert re.search(r"^\s+0$", sections["No token: nothing"], re.M)
    assert "ERROR:  invalid token signature" in sections["A forged token inside the policy: the query fails"]
