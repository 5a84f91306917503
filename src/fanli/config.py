"""Settings, read once from the environment (prefix ``FANLI_``) or given explicitly in tests.

``FANLI_DATABASE_URL`` selects the relational store (default: SQLite in the data directory);
``FANLI_DATA_DIR`` holds that database and the sales fact store (immutable Parquet per batch).
"""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FANLI_")

    data_dir: Path = Path("fanli-data")
    database_url: str | None = None

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'fanli.db').resolve()}"

    @property
    def facts_dir(self) -> Path:
        return self.data_dir / "facts"
