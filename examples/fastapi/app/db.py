"""One transaction per request, as the caller: the role and the bearer token are set
transaction-locally, and row-level security (auth_jwt.jwt_claim_uuid()) does the filtering.
The token is verified by PostgreSQL against Better Auth's jwks table; nothing here parses it."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from uuid import UUID

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool


class Unauthorized(Exception):
    """The database refused the token (SQLSTATE 28000): missing, invalid or expired."""

    def __init__(self, reason: str, detail: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


@asynccontextmanager
async def as_caller(pool: AsyncConnectionPool, token: str) -> AsyncIterator[tuple[psycopg.AsyncConnection, UUID]]:
    """Open a transaction as role `authenticated` carrying `token`; yield it with the caller's uuid."""
    async with pool.connection() as conn:
        conn.row_factory = dict_row
        try:
            async with conn.transaction():
                await conn.execute("SET LOCAL ROLE authenticated")
                await conn.execute("SELECT set_config('auth_jwt.token', %s, true)", (token,))
                row = await (await conn.execute("SELECT auth_jwt.jwt_claim_uuid() AS me")).fetchone()
                yield conn, row["me"]
        except psycopg.errors.InvalidAuthorizationSpecification as e:
            # The message is auth_jwt's fixed vocabulary ("token has expired", ...); the detail
            # names the claim or part, never the token itself.
            raise Unauthorized(e.diag.message_primary or "invalid token", e.diag.message_detail) from None
