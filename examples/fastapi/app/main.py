"""The tasks backend, rebuilt on auth_jwt: PostgreSQL verifies the Better Auth JWT and row-level
security returns only the caller's rows. This app only routes, validates input and maps errors.

    uvicorn app.main:app --port 8000
"""

from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import Depends, FastAPI, HTTPException, Request, status
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from psycopg_pool import AsyncConnectionPool
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from .db import Unauthorized, as_caller
from .settings import Settings

settings = Settings.from_env()


@asynccontextmanager
async def lifespan(app: FastAPI):
    pool = AsyncConnectionPool(settings.database_url, min_size=1, max_size=settings.pool_max, open=False)
    await pool.open(wait=True)
    app.state.pool = pool
    yield
    await pool.close()


app = FastAPI(title="Tasks (auth_jwt)", lifespan=lifespan)
app.add_middleware(
    CORSMiddleware,
    allow_origins=list(settings.frontend_origins),
    allow_credentials=True,
    allow_methods=["GET", "POST", "PATCH", "DELETE"],
    allow_headers=["Authorization", "Content-Type"],
)


def no_nul(s: str) -> str:
    # PostgreSQL text cannot hold U+0000: refuse it here (422) rather than fail in the database (500).
    if "\x00" in s:
        raise ValueError("must not contain U+0000")
    return s


Title = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(no_nul)]


class TaskCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: Title
    completed: bool = False


class TaskUpdate(BaseModel):
    """Fields may be omitted, but not sent as null: the columns are NOT NULL."""

    model_config = ConfigDict(extra="forbid")
    title: Title | None = None
    completed: bool | None = None

    @field_validator("title", "completed", mode="before")
    @classmethod
    def not_null(cls, v):
        if v is None:
            raise ValueError("must not be null (omit the field to leave it unchanged)")
        return v


class Task(BaseModel):
    id: UUID
    user_id: UUID
    title: str
    completed: bool
    created_at: datetime
    updated_at: datetime


def unauthorized(reason: str, detail: str | None = None) -> JSONResponse:
    # Where a client gets a fresh token: Better Auth's token endpoint (the session cookie is enough).
    body = {"error": "unauthorized", "reason": reason, "token_endpoint": f"{settings.better_auth_url.rstrip('/')}/api/auth/token"}
    if detail:
        body["detail"] = detail
    return JSONResponse(status_code=401, content=body, headers={"WWW-Authenticate": 'Bearer realm="tasks"'})


@app.exception_handler(Unauthorized)
async def on_unauthorized(_: Request, e: Unauthorized) -> JSONResponse:
    return unauthorized(e.reason, e.detail)


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing bearer token", "Send Authorization: Bearer <token from Better Auth's /api/auth/token>.")
    return token.strip()


def caller(request: Request, user_id: UUID, token: str = Depends(bearer_token)):
    """Verify in the database, then check that the path's user is the token's user."""

    @asynccontextmanager
    async def transaction():
        async with as_caller(request.app.state.pool, token) as (conn, me):
            if me is None:
                raise Unauthorized("token missing UUID (uuid claim)")
            if me != user_id:
                raise HTTPException(status.HTTP_403_FORBIDDEN, "the user in the path is not the token's user")
            yield conn

    return transaction


TASK_COLUMNS = "id, user_id, title, completed, created_at, updated_at"


@app.get("/api/{user_id}/tasks", response_model=list[Task])
async def list_tasks(tx=Depends(caller)):
    async with tx() as conn:
        cur = await conn.execute(f"SELECT {TASK_COLUMNS} FROM tasks ORDER BY created_at, id")
        return await cur.fetchall()


@app.post("/api/{user_id}/tasks", response_model=Task, status_code=201)
async def create_task(body: TaskCreate, user_id: UUID, tx=Depends(caller)):
    async with tx() as conn:
        cur = await conn.execute(
            f"INSERT INTO tasks (user_id, title, completed) VALUES (%s, %s, %s) RETURNING {TASK_COLUMNS}",
            (user_id, body.title, body.completed),
        )
        return await cur.fetchone()


@app.get("/api/{user_id}/tasks/{task_id}", response_model=Task)
async def get_task(task_id: UUID, tx=Depends(caller)):
    async with tx() as conn:
        row = await (await conn.execute(f"SELECT {TASK_COLUMNS} FROM tasks WHERE id = %s", (task_id,))).fetchone()
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "task not found")
    return row


@app.patch("/api/{user_id}/tasks/{task_id}", response_model=Task)
async def update_task(task_id: UUID, body: TaskUpdate, tx=Depends(caller)):
    changes = body.model_dump(exclude_unset=True)
    if not changes:
        raise HTTPException(422, "nothing to update")
    assignments = ", ".join(f"{col} = %({col})s" for col in changes)  # columns from the model, not input
    async with tx() as conn:
        row = await (
            await conn.execute(
                f"UPDATE tasks SET {assignments}, updated_at = now() WHERE id = %(id)s RETURNING {TASK_COLUMNS}",
                {**changes, "id": task_id},
            )
        ).fetchone()
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "task not found")
    return row


@app.delete("/api/{user_id}/tasks/{task_id}", status_code=204)
async def delete_task(task_id: UUID, tx=Depends(caller)):
    async with tx() as conn:
        cur = await conn.execute("DELETE FROM tasks WHERE id = %s", (task_id,))
    if cur.rowcount == 0:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "task not found")
