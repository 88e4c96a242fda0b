"""The tasks API end to end: real Better Auth tokens, real PostgreSQL with auth_jwt and RLS."""

import asyncio
import json
import importlib
import sys

import httpx
import pytest

from conftest import HERE, admin, issue

sys.path.insert(0, f"{HERE}/..")


@pytest.fixture
async def api(world):
    import app.settings
    import app.main

    importlib.reload(app.settings)
    main = importlib.reload(app.main)  # settings are read at import, from the world's environment
    async with main.app.router.lifespan_context(main.app):
        transport = httpx.ASGITransport(app=main.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


def auth(user):
    return {"Authorization": f"Bearer {user['token']}"}


pytestmark = pytest.mark.anyio


async def test_crud_cycle(api, world):
    u = world["users"][0]
    base = f"/api/{u['uuid']}/tasks"
    assert (await api.get(base, headers=auth(u))).json() == []
    r = await api.post(base, json={"title": "write tests"}, headers=auth(u))
    assert r.status_code == 201, r.text
    task = r.json()
    assert task["user_id"] == u["uuid"] and task["completed"] is False
    assert (await api.get(f"{base}/{task['id']}", headers=auth(u))).json()["title"] == "write tests"
    r = await api.patch(f"{base}/{task['id']}", json={"completed": True}, headers=auth(u))
    assert r.status_code == 200 and r.json()["completed"] is True
    assert [t["id"] for t in (await api.get(base, headers=auth(u))).json()] == [task["id"]]
    assert (await api.delete(f"{base}/{task['id']}", headers=auth(u))).status_code == 204
    assert (await api.get(f"{base}/{task['id']}", headers=auth(u))).status_code == 404
    assert (await api.get(base, headers=auth(u))).json() == []


async def test_cross_user_access_is_refused(api, world):
    a, b = world["users"][1], world["users"][2]
    task = (await api.post(f"/api/{a['uuid']}/tasks", json={"title": "a's"}, headers=auth(a))).json()
    # b's token on a's path: 403, whatever the method.
    for method, url, body in [
        ("GET", f"/api/{a['uuid']}/tasks", None),
        ("POST", f"/api/{a['uuid']}/tasks", {"title": "planted"}),
        ("GET", f"/api/{a['uuid']}/tasks/{task['id']}", None),
        ("PATCH", f"/api/{a['uuid']}/tasks/{task['id']}", {"title": "hijacked"}),
        ("DELETE", f"/api/{a['uuid']}/tasks/{task['id']}", None),
    ]:
        r = await api.request(method, url, json=body, headers=auth(b))
        assert r.status_code == 403, (method, url, r.text)
    # b's own path with a's task id: RLS hides it.
    for method in ("GET", "PATCH", "DELETE"):
        r = await api.request(method, f"/api/{b['uuid']}/tasks/{task['id']}", json={"title": "x"} if method == "PATCH" else None, headers=auth(b))
        assert r.status_code == 404, (method, r.text)
    assert (await api.get(f"/api/{a['uuid']}/tasks/{task['id']}", headers=auth(a))).json()["title"] == "a's"


async def test_missing_invalid_and_forged_tokens_answer_401(api, world):
    u = world["users"][3]
    base = f"/api/{u['uuid']}/tasks"
    r = await api.get(base)
    assert r.status_code == 401 and r.json()["reason"] == "missing bearer token"
    assert r.json()["token_endpoint"] == "http://localhost:3000/api/auth/token"
    assert r.headers["www-authenticate"].startswith("Bearer")
    r = await api.get(base, headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert r.status_code == 401 and r.json()["reason"] == "missing bearer token"
    r = await api.get(base, headers={"Authorization": "Bearer not-a-jwt"})
    assert r.status_code == 401 and r.json()["reason"] == "malformed token"
    header, payload, sig = u["token"].split(".")
    other = world["users"][4]["token"].split(".")
    forged = f"{header}.{other[1]}.{sig}"  # another user's claims under this signature
    r = await api.get(base, headers={"Authorization": f"Bearer {forged}"})
    assert r.status_code == 401 and r.json()["reason"] == "invalid token signature"
    for resp in (r,):
        assert u["token"] not in resp.text and sig not in resp.text, "never echo the token"


async def test_validation_errors_answer_422(api, world):
    u = world["users"][5]
    base = f"/api/{u['uuid']}/tasks"
    assert (await api.post(base, json={"title": ""}, headers=auth(u))).status_code == 422
    assert (await api.post(base, json={"title": "x" * 201}, headers=auth(u))).status_code == 422
    assert (await api.post(base, json={"title": "ok", "user_id": "00000000-0000-0000-0000-000000000000"}, headers=auth(u))).status_code == 422
    assert (await api.get("/api/not-a-uuid/tasks", headers=auth(u))).status_code == 422
    assert (await api.get(f"{base}/not-a-uuid", headers=auth(u))).status_code == 422
    task = (await api.post(base, json={"title": "ok"}, headers=auth(u))).json()
    assert (await api.patch(f"{base}/{task['id']}", json={}, headers=auth(u))).status_code == 422
    assert (await api.patch(f"{base}/{task['id']}", json={"completed": "maybe"}, headers=auth(u))).status_code == 422
    # NOT NULL columns: null is bad input, not a server error.
    assert (await api.patch(f"{base}/{task['id']}", json={"title": None}, headers=auth(u))).status_code == 422
    assert (await api.patch(f"{base}/{task['id']}", json={"completed": None}, headers=auth(u))).status_code == 422
    assert (await api.post(base, json={"title": "ok", "completed": None}, headers=auth(u))).status_code == 422
    # PostgreSQL text cannot hold U+0000.
    assert (await api.post(base, json={"title": "a\u0000b"}, headers=auth(u))).status_code == 422
    assert (await api.patch(f"{base}/{task['id']}", json={"title": "\u0000"}, headers=auth(u))).status_code == 422
    assert (await api.get(f"{base}/{task['id']}", headers=auth(u))).json()["title"] == "ok", "nothing changed"


async def test_cors_allows_the_frontend_origin(api, world):
    u = world["users"][6]
    pre = await api.options(
        f"/api/{u['uuid']}/tasks",
        headers={"Origin": "http://localhost:5173", "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,content-type"},
    )
    assert pre.status_code == 200
    assert pre.headers["access-control-allow-origin"] == "http://localhost:5173"
    evil = await api.options(
        f"/api/{u['uuid']}/tasks", headers={"Origin": "https://evil.example.com", "Access-Control-Request-Method": "GET"}
    )
    assert "access-control-allow-origin" not in evil.headers


async def test_fifty_users_in_parallel_see_only_their_own_rows(api, world):
    users = world["users"][:50]

    async def work(u):
        base = f"/api/{u['uuid']}/tasks"
        for i in range(2):
            r = await api.post(base, json={"title": f"{u['email']} #{i}"}, headers=auth(u))
            assert r.status_code == 201, r.text
        rows = (await api.get(base, headers=auth(u))).json()
        return u, rows

    results = await asyncio.gather(*(work(u) for u in users))
    for u, rows in results:
        mine = [t for t in rows if t["title"].startswith(u["email"] + " #")]
        assert len(mine) == 2, (u["email"], rows)
        assert all(t["user_id"] == u["uuid"] for t in rows), "only this user's rows"


@pytest.fixture
def short(world):
    """A user whose Better Auth issues 2-second tokens, in the same database, with no leeway
    (set before the app's pool opens, so its sessions see it)."""
    import json
    import subprocess

    from conftest import ROOT

    with admin(world["db"]) as c:
        c.execute(f"ALTER DATABASE {world['db']} SET auth_jwt.leeway = 0")
    db = world["db"]
    script = f"""
      import {{ betterAuth }} from "better-auth";
      import {{ authOptions, pool, signUp, apiToken }} from "./app.mjs";
      const db = pool("{db}");
      const auth = betterAuth(authOptions(db, {{ expirationTime: "2s" }}));
      const {{ user, cookie }} = await signUp(auth, "short@example.com");
      const {{ rows }} = await db.query('SELECT uuid::text FROM "user" WHERE id = $1', [user.id]);
      process.stdout.write(JSON.stringify({{ uuid: rows[0].uuid, token: await apiToken(auth, cookie) }}));
      await db.end();
    """
    out = subprocess.run(["node", "--input-type=module", "-e", script], cwd=f"{ROOT}/tests/interop", check=True, capture_output=True, text=True)
    yield json.loads(out.stdout)
    with admin(world["db"]) as c:
        c.execute(f"ALTER DATABASE {world['db']} RESET auth_jwt.leeway")


async def test_token_expiring_mid_session_answers_401(short, api):
    base = f"/api/{short['uuid']}/tasks"
    assert (await api.get(base, headers=auth(short))).status_code == 200
    await asyncio.sleep(3)
    r = await api.get(base, headers=auth(short))
    assert r.status_code == 401 and r.json()["reason"] == "token has expired", r.text
    assert short["token"] not in r.text


@pytest.fixture
def sessions_required(world):
    """auth_jwt.require_session = on for the world's database (before the app opens its pool)."""
    with admin(world["db"]) as c:
        c.execute(f"ALTER DATABASE {world['db']} SET auth_jwt.require_session = on")
    yield
    with admin(world["db"]) as c:
        c.execute(f"ALTER DATABASE {world['db']} RESET auth_jwt.require_session")


def sign_out(world, user):
    """The real Better Auth signOut, with the user's session cookie."""
    import subprocess

    from conftest import ROOT

    script = f"""
      import {{ betterAuth }} from "better-auth";
      import {{ authOptions, pool }} from "./app.mjs";
      const db = pool("{world['db']}");
      await betterAuth(authOptions(db)).api.signOut({{ headers: new Headers({{ cookie: {json.dumps(user['cookie'])} }}) }});
      await db.end();
    """
    subprocess.run(["node", "--input-type=module", "-e", script], cwd=f"{ROOT}/tests/interop", check=True, capture_output=True, text=True)


async def test_sign_out_answers_401_at_the_next_request(sessions_required, api, world):
    """Last in this file: it signs a user of the shared world out."""
    gone, stays = world["users"][0], world["users"][1]
    for u in (gone, stays):
        assert (await api.get(f"/api/{u['uuid']}/tasks", headers=auth(u))).status_code == 200
    sign_out(world, gone)
    r = await api.get(f"/api/{gone['uuid']}/tasks", headers=auth(gone))
    assert r.status_code == 401 and r.json()["reason"] == "session has ended", r.text
    assert gone["token"] not in r.text
    assert (await api.get(f"/api/{stays['uuid']}/tasks", headers=auth(stays))).status_code == 200
