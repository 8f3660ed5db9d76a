"""All runtime settings, read from FINSENT_* environment variables (or a .env file).

This is the one place that defines each default.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FINSENT_", env_file=".env", extra="ignore")

    home: Path = Field(Path(".finsent"), description="Working directory for the embedded default")
    base_model: str | None = Field(
        None, description="Pretrained encoder directory; empty = packaged all-MiniLM-L6-v2"
    )
    model: Path | None = Field(None, description="Model directory to serve (overrides registry)")
    precision: Literal["auto", "fp32", "bf16", "int8"] = "auto"
    torch_threads: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1)
    max_length: int = Field(64, ge=8, le=512)
    seed: int = 42
    dev_fraction: float = Field(0.1, gt=0.0, lt=1.0)
    sentiment_data: Path = Field(
        Path("../shared/data/tfn/sentiment_train.csv"), description="Seed sentiment file for bootstrap"
    )
    topic_data: Path = Field(
        Path("../shared/data/tfn/topic_train.csv"), description="Seed topic file for bootstrap"
    )
    bootstrap_minutes: float = Field(25.0, gt=0, description="Time budget of the bootstrap training")
    bootstrap_epochs: int = Field(3, ge=1)
    database_url: str = Field(
        default_factory=lambda data: f"sqlite:///{(data['home'] / 'finsent.db').as_posix()}",
        description="SQLAlchemy URL, e.g. postgresql+psycopg://user@host/db; default: SQLite in `home`",
    )
    log_level: str = "INFO"
    log_format: Literal["console", "json"] = "console"

    @property
    def default_model_dir(self) -> Path:
        return self.home / "models" / "bootstrap"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
