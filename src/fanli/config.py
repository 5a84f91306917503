"""Settings, read once from the environment (prefix ``FANLI_``) or given explicitly in tests.

``FANLI_DATABASE_URL`` selects the relational store (default: SQLite in the data directory);
``FANLI_DATA_DIR`` holds that database and the sales fact store (immutable Parquet per batch).
``FANLI_READ_CACHE_SIZE`` is how many bodies of hot API reads each server process keeps
(ADR 0007); 0 turns the cache off.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FANLI_")

    data_dir: Path = Path("fanli-data")
    database_url: str | None = None
    read_cache_size: int = Field(default=2_000, ge=0)

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'fanli.db').resolve()}"

    @property
    def facts_dir(self) -> Path:
        return self.data_dir / "facts"
