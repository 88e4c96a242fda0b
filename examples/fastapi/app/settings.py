"""Configuration from environment variables (see .env.example)."""

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Settings:
    database_url: str
    better_auth_url: str
    frontend_origins: tuple[str, ...]
    pool_max: int

    @classmethod
    def from_env(cls) -> "Settings":
        return cls(
            database_url=os.environ.get("DATABASE_URL", "postgresql://authenticator@localhost:5432/app"),
            better_auth_url=os.environ.get("BETTER_AUTH_URL", "http://localhost:3000"),
            frontend_origins=tuple(
                o.strip() for o in os.environ.get("FRONTEND_ORIGIN", "http://localhost:3000").split(",") if o.strip()
            ),
            pool_max=int(os.environ.get("DB_POOL_MAX", "10")),
        )
