"""All runtime settings, read from FINSENT_* environment variables (or a .env file).

This is the one place that defines each default.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
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
    bootstrap_minutes: float = Field(
        6.0,
        gt=0,
        description="Minutes of bootstrap training: short, so a fresh `finsent run` scores within minutes",
    )
    bootstrap_epochs: int = Field(4, ge=1)
    database_url: str = Field(
        default_factory=lambda data: f"sqlite:///{(data['home'] / 'finsent.db').as_posix()}",
        description="SQLAlchemy URL, e.g. postgresql+psycopg://user@host/db; default: SQLite in `home`",
    )
    kafka_bootstrap: str | None = Field(
        None,
        description="Kafka bootstrap servers, host:port[,host:port]; empty = the embedded broker",
    )
    kafka_timeout_seconds: float = Field(
        10.0, gt=0, description="How long to wait for the broker to answer before giving up"
    )
    topic_news_raw: str = Field("news.raw", min_length=1, description="Incoming news (key: event_id)")
    topic_news_scored: str = Field("news.scored", min_length=1, description="Scored news for the alerter")
    topic_news_dlq: str = Field("news.dlq", min_length=1, description="Messages that cannot be processed")
    topic_model_events: str = Field("model.events", min_length=1, description="Model promotions, rollbacks")
    topic_partitions: int = Field(4, ge=1, description="Partitions of the news topics (max parallel workers)")
    model_events_partitions: int = Field(
        1, ge=1, description="Partitions of model.events: 1 keeps promotions and rollbacks in total order"
    )
    topic_replication_factor: int = Field(1, ge=1, description="Replicas per partition (3 on a real cluster)")
    scorer_group: str = Field(
        "finsent-scorer", min_length=1, description="Consumer group (and faust app id) of the scorer workers"
    )
    scorer_session_timeout_seconds: float = Field(
        10.0, gt=0, description="Kafka session timeout of a scorer worker (Tansu: a join waits half of it)"
    )
    scorer_max_batch: int = Field(256, ge=1, description="Largest micro-batch the scorer takes at once")
    scorer_batch_seconds: float = Field(
        0.05, gt=0, description="Longest wait to fill a micro-batch before scoring what is there"
    )
    scorer_fetch_max_wait_ms: int = Field(
        100,
        ge=1,
        description="Longest time the broker may hold a fetch of the worker (faust's fixed 1500 ms "
        "dominated latency on the embedded broker)",
    )
    scorer_db_retry_max_seconds: float = Field(
        10.0,
        ge=0.5,
        description="Longest pause between database retries during an outage (the backoff's cap)",
    )
    scorer_web_port: int | None = Field(
        None, ge=0, le=65535, description="Port of the worker's faust web server; empty = off"
    )
    scorer_metrics_host: str = Field(
        "127.0.0.1", description="Address of the worker's /metrics and /health server (0.0.0.0: all)"
    )
    scorer_metrics_port: int = Field(
        9464, ge=0, le=65535, description="Port of the worker's /metrics and /health; 0 = any free port"
    )
    ingest_http_host: str = Field("127.0.0.1", description="Address of `finsent serve-http`")
    ingest_http_port: int = Field(8080, ge=0, le=65535, description="Port of `finsent serve-http`")
    ingest_max_request_bytes: int = Field(
        8_000_000, ge=1024, description="Largest POST /news body accepted (larger: 413)"
    )
    feed_interval_seconds: float = Field(60.0, gt=0, description="Seconds between feed polls")
    watchlist: Path | None = Field(
        None,
        description="CSV (name,ticker) or JSON {name: ticker} of company names to tag; empty = built-in list",
    )
    log_level: str = "INFO"
    log_format: Literal["console", "json"] = "console"

    @field_validator("kafka_bootstrap")
    @classmethod
    def _blank_is_embedded(cls, value: str | None) -> str | None:
        # FINSENT_KAFKA_BOOTSTRAP= (set but empty) means the same as unset: the embedded broker.
        return (value.strip() or None) if value is not None else None

    @property
    def default_model_dir(self) -> Path:
        return self.home / "models" / "bootstrap"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
