"""All runtime settings, read from FINSENT_* environment variables (or a .env file).

This is the one place that defines each default.

Settings come in groups, one per part of the system (`settings.kafka`, `settings.alerts`,
`settings.scorer`, ...), so a service is handed, and a reader finds, the few dozen values that
concern it rather than all of them. Two rules keep the groups invisible from outside:

- A field keeps its full name inside its group (`settings.alerts.alert_window_buckets`, not
  `settings.alerts.window_buckets`), and its variable is always FINSENT_ + the field name in
  upper case (FINSENT_ALERT_WINDOW_BUCKETS). So users' .env files and deploy/ manifests keep
  working, a variable names its field without a table in between, and code moved to groups
  mechanically (settings_codemod) reads as before with the group in the middle.
- The variables stay flat: no FINSENT_ALERTS__... nesting. The environment, the .env file and
  secret files are read against `FlatSettings` (every field of every group side by side) and
  the values are then put into their groups (`nest_flat`). Doing that in the sources rather
  than in a validator keeps pydantic-settings' own order between them (an argument beats the
  environment, which beats .env) field by field. `Settings(alert_p_high=1e-3)` and
  `Settings.model_validate({...flat...})` are routed the same way, so a flat keyword still
  sets one field; reading `settings.alert_p_high` does not work (mypy says so).

`home` is the one field outside the groups: it is the root every path default hangs off
(`HOME_DEFAULTS`), and `Settings` names the folders under it (`models_dir`, `logs_dir`, ...).
"""

from __future__ import annotations

import copy
import difflib
import ipaddress
import os
import re
import types
from collections.abc import Callable, Mapping
from functools import cache, lru_cache
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from bert_core import DEFAULT_LABELS, LORA_BERT_TARGETS, LoraOptions, TrainMethod, packaged_seed_data
from services.outbound.policy import OutboundPolicy

DEFAULT_HOME = Path("~/.finsent")
# URL schemes of the backends the migrations and the storage code are tested on, with the
# drivers installed (psycopg 3 for PostgreSQL; a bare postgresql:// means it).
SUPPORTED_DATABASES = ("postgresql", "postgres", "postgresql+psycopg", "sqlite", "sqlite+pysqlite")
# The largest FINSENT_MAX_FUTURE_SKEW_SECONDS: ten years (of 365 days), far beyond any real
# skew. Unbounded, a huge value overflowed the future-date check (receive time + skew past the
# year 9999, or past the largest timedelta) of every message; bounded, it is one settings error
# at start-up.
MAX_FUTURE_SKEW_SECONDS = 10 * 365 * 24 * 3600


class _Group(BaseModel):
    # A misspelt field inside a group is an error, not silently dropped.
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _blank_is_unset(cls, data: Any) -> Any:
        # FINSENT_X= (set but empty) for a setting whose default is None means unset, as
        # docs/settings.md says of each ("empty = none"), instead of a number that does not
        # parse or a path to the working directory.
        if not isinstance(data, Mapping):
            return data
        optional = _optional_fields(cls)
        return {
            key: None if key in optional and isinstance(value, str) and not value.strip() else value
            for key, value in data.items()
        }


@cache
def _optional_fields(model: type[BaseModel]) -> frozenset[str]:
    """The fields of `model` that may be None (`int | None`, `Literal[...] | None`, ...)."""
    return frozenset(
        name
        for name, info in model.model_fields.items()
        if get_origin(info.annotation) in (Union, types.UnionType) and type(None) in get_args(info.annotation)
    )


class InferenceSettings(_Group):
    """The model a worker serves and how it runs it (`finsent worker`, `finsent score`)."""

    model: Path | None = Field(None, description="Model directory to serve (overrides registry)")
    model_poll_seconds: float = Field(
        30.0,
        gt=0,
        description="How often a worker re-reads the registry's champion (model.events wakes it sooner)",
    )
    model_artifact_chunk_mb: int = Field(
        4,
        ge=1,
        le=64,
        description="Registering a model stores its files in the database in chunks of this many MB, so "
        "workers on other hosts fetch it into home/models/cache (docs/operations.md#models-across-hosts)",
    )
    precision: Literal["auto", "fp32", "bf16", "int8"] = Field(
        "auto",
        description="Inference path; auto = the fastest within half a point of fp32 on this CPU: bf16 with "
        "AMX tiles, else int8, else fp32 (see docs/performance.md#precision)",
    )
    compile: bool = Field(
        True,
        description="Serve with the encoder pass compiled by torch.compile: 7-15 % more headlines/s "
        "and a third off the live stream's p99 (docs/performance.md#compiled-pass); needs g++ and "
        "Python's headers, and adds 30-60 s to each model load",
    )
    torch_threads: int = Field(
        default_factory=lambda: os.cpu_count() or 1,
        ge=1,
        description="Torch threads in all, shared by the parallel passes",
    )
    parallel_passes: int = Field(
        2,
        ge=1,
        description="Forward passes run side by side, sharing torch_threads (measured faster than "
        "one pass on all threads: docs/performance.md#parallel-passes)",
    )
    max_length: int = Field(64, ge=8, le=512, description="Most tokens per text; longer texts are truncated")


class TrainingSettings(_Group):
    """The encoder, seed data and time box of the bootstrap model `finsent run` trains, and of the
    full-quality model it trains in the background to replace it."""

    base_model: str | None = Field(
        None,
        description="Encoder to fine-tune: a name from `finsent encoders list` (minilm, mpnet-base) or "
        "an encoder directory; empty = minilm, the packaged all-MiniLM-L6-v2",
    )
    seed: int = Field(42, description="Seed of the dev split and of training")
    dev_fraction: float = Field(
        0.1, gt=0.0, lt=1.0, description="Share of each seed file held out as the dev split (never trained)"
    )
    sentiment_data: Path = Field(
        default_factory=lambda: packaged_seed_data()["sentiment"],
        description="Seed sentiment file (text,label) for the bootstrap model, the frozen holdout and the "
        "demo; default: the packaged Twitter Financial News set (bert_core/seed_data, MIT)",
    )
    topic_data: Path = Field(
        default_factory=lambda: packaged_seed_data()["topic"],
        description="Seed topic file (text,label) for the bootstrap model and the frozen holdout; "
        "default: the packaged Twitter Financial News set (bert_core/seed_data, MIT)",
    )
    shipped_soft_targets: bool = Field(
        True,
        description="`finsent train` and the background upgrade distil from the teacher's soft targets "
        "shipped beside the seed data (bert_core/seed_data/soft_targets.npz) when that file exists and "
        "matches the training files: an MPNet-base teacher's probabilities, worth about 1 pt on every dev "
        "figure (docs/learning.md#soft-targets)",
    )
    bootstrap_minutes: float = Field(
        6.0,
        gt=0,
        description="Minutes of bootstrap training: short, so a fresh `finsent run` scores within minutes",
    )
    bootstrap_epochs: int = Field(
        4, ge=1, description="Epoch cap of the bootstrap training (the time box usually ends it first)"
    )
    upgrade_bootstrap: bool = Field(
        True,
        description="`finsent run` trains the full-quality model (the `finsent train` recipe on the seed "
        "data) in the background while the bootstrap model serves, and promotes it through the gate; "
        "false (or `finsent run --no-upgrade`) keeps the bootstrap model",
    )
    upgrade_max_minutes: float | None = Field(
        None,
        gt=0,
        description="Time box of the background full-model training; empty = none (the default recipe "
        "runs to its epoch cap or early stop)",
    )
    upgrade_torch_threads: int | None = Field(
        None,
        ge=1,
        description="Torch threads of the background full-model training; empty = half the CPU cores "
        "(at least 1), so the scorer keeps a core",
    )
    upgrade_nice: int = Field(
        19,
        ge=0,
        le=19,
        description="Nice increment of the background full-model training process: 19 (the lowest "
        "priority) gives the pipeline's processes the CPU whenever they want it",
    )


class DatabaseSettings(_Group):
    """The database every service shares, and its TLS (docs/operations.md#secured-connections)."""

    database_url: str = Field(
        description="SQLAlchemy URL, e.g. postgresql+psycopg://user@host/db; default: SQLite in `home`",
    )
    # Postgres TLS (docs/operations.md#secured-connections): passed to libpq by
    # services.storage.engine; a value also given in FINSENT_DATABASE_URL's query is refused.
    database_sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] | None = (
        Field(
            None,
            description="libpq sslmode; verify-full checks the server's certificate and host name; empty = "
            "libpq's default (prefer) or the URL's",
        )
    )
    database_sslrootcert: Path | None = Field(
        None, description="PEM file of the CA that signed the Postgres server's certificate"
    )
    database_sslcert: Path | None = Field(None, description="PEM client certificate for Postgres")
    database_sslkey: Path | None = Field(
        None, description="PEM private key of the Postgres client certificate"
    )

    @field_validator("database_url")
    @classmethod
    def _supported_database(cls, value: str) -> str:
        # Anything else would fail later, with a driver traceback.
        if "://" not in value:
            raise ValueError(
                "not a URL (expected e.g. postgresql+psycopg://user@host/db or sqlite:///path/to/finsent.db)"
            )
        scheme = value.split("://", 1)[0].lower()
        if scheme not in SUPPORTED_DATABASES:
            raise ValueError(
                f"unsupported database {scheme!r}: use postgresql://user:password@host:5432/db "
                "or sqlite:///path/to/finsent.db"
            )
        problem = database_url_problem(value)
        if problem:
            raise ValueError(f"{problem} (expected e.g. postgresql+psycopg://user:password@host:5432/db)")
        return value


class KafkaSettings(_Group):
    """The broker, its security and the topics (docs/operations.md#secured-connections)."""

    kafka_bootstrap: str | None = Field(
        None,
        description="Kafka bootstrap servers, host:port[,host:port]; empty = the embedded broker",
    )
    kafka_timeout_seconds: float = Field(
        10.0, gt=0, description="How long to wait for the broker to answer before giving up"
    )
    # Kafka security (docs/operations.md#secured-connections): services.broker.security turns
    # these into the options of every Kafka client finsent creates (faust, aiokafka, kafka-python).
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT",
        description="How clients talk to the brokers: PLAINTEXT, SSL (TLS), SASL_PLAINTEXT or SASL_SSL "
        "(SASL login over TLS: what MSK, Confluent Cloud and Aiven offer)",
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, description="SASL mechanism of SASL_PLAINTEXT/SASL_SSL; empty with PLAINTEXT/SSL"
    )
    kafka_sasl_username: str | None = Field(None, description="SASL user (Confluent Cloud: the API key)")
    kafka_sasl_password: SecretStr | None = Field(
        None,
        description="SASL password; prefer FINSENT_KAFKA_SASL_PASSWORD_FILE, which keeps it out of the "
        "environment",
    )
    kafka_sasl_password_file: Path | None = Field(
        None, description="File holding the SASL password (a mounted secret; its trailing newline is ignored)"
    )
    kafka_ssl_cafile: Path | None = Field(
        None,
        description="PEM file of the CA(s) that signed the brokers' certificates; empty = the system trust "
        "store (enough for Confluent Cloud and MSK, whose certificates chain to public CAs)",
    )
    kafka_ssl_certfile: Path | None = Field(
        None, description="PEM client certificate (chain) for mutual TLS (Aiven, Strimzi tls users)"
    )
    kafka_ssl_keyfile: Path | None = Field(
        None, description="PEM private key of the client certificate; empty = inside the certificate file"
    )
    kafka_ssl_key_password: SecretStr | None = Field(None, description="Password of an encrypted client key")
    kafka_ssl_key_password_file: Path | None = Field(
        None, description="File holding the client key's password (instead of FINSENT_KAFKA_SSL_KEY_PASSWORD)"
    )
    kafka_ssl_check_hostname: bool = Field(
        True,
        description="Check that a broker's certificate names the host the client connected to; turn off "
        "only for brokers reached by an address their certificate does not list",
    )
    topic_news_raw: str = Field("news.raw", min_length=1, description="Incoming news (key: event_id)")
    topic_news_scored: str = Field("news.scored", min_length=1, description="Scored news for the alerter")
    topic_news_dlq: str = Field("news.dlq", min_length=1, description="Messages that cannot be processed")
    topic_model_events: str = Field("model.events", min_length=1, description="Model promotions, rollbacks")
    topic_alerts: str = Field(
        "alerts", min_length=1, description="Alert notifications from the alerter (key: dedupe key)"
    )
    topic_partitions: int = Field(4, ge=1, description="Partitions of the news topics (max parallel workers)")
    topic_replication_factor: int = Field(1, ge=1, description="Replicas per partition (3 on a real cluster)")
    model_events_partitions: int = Field(
        1, ge=1, description="Partitions of model.events: 1 keeps promotions and rollbacks in total order"
    )

    @field_validator("kafka_bootstrap")
    @classmethod
    def _blank_is_embedded(cls, value: str | None) -> str | None:
        # FINSENT_KAFKA_BOOTSTRAP= (set but empty) means the same as unset: the embedded broker.
        value = (value.strip() or None) if value is not None else None
        if value is not None:
            # Checked here, not by the Kafka client (a ValueError deep in kafka-python), so
            # `finsent config`, `doctor` and `--bootstrap-server` say what is wrong.
            problem = bootstrap_problem(value)
            if problem:
                raise ValueError(problem)
        return value


class IngestSettings(_Group):
    """Getting news in: `finsent serve-http`, feeds, the watchlist of names to tag."""

    ingest_linger_ms: int = Field(
        20,
        ge=0,
        le=1000,
        description="How long an ingest producer (files, HTTP, feeds, the demo) gathers messages "
        "into one request: fewer, larger record batches cost the broker and the worker far less "
        "(docs/performance.md#ingest-linger)",
    )
    ingest_http_host: str = Field(
        "127.0.0.1", description="Address of `finsent serve-http` (0.0.0.0: all; put TLS in front)"
    )
    ingest_http_port: int = Field(8080, ge=0, le=65535, description="Port of `finsent serve-http`")
    ingest_tokens_file: Path = Field(
        description="JSON file of POST /news bearer tokens (SHA-256 hashes, names, created, revoked); "
        "`finsent tokens add|list|revoke` writes it, a running `serve-http` follows it within a second",
    )
    ingest_token_hashes: str = Field(
        "",
        description="More POST /news tokens as comma-separated NAME:SHA256 entries (from a secret; "
        "`finsent tokens add NAME --hash-only` prints one); a change needs a restart",
    )
    ingest_max_request_bytes: int = Field(
        8_000_000, ge=1024, description="Largest POST /news body accepted (larger: 413)"
    )
    ingest_max_items_per_request: int = Field(
        10_000, ge=1, description="Most items one POST /news may hold (more: 413, nothing sent)"
    )
    ingest_max_concurrent_requests: int = Field(
        4, ge=1, description="POST /news requests handled at once; more are answered 503 with Retry-After"
    )
    ingest_body_timeout_seconds: float = Field(
        30.0, gt=0, description="Deadline for receiving a POST /news body (later: 408)"
    )
    feed_interval_seconds: float = Field(60.0, gt=0, description="Seconds between feed polls")
    feed_fetch_timeout_seconds: float = Field(
        20.0, gt=0, description="Deadline of one feed fetch: redirects, headers and the whole body"
    )
    watchlist: Path | None = Field(
        None,
        description="CSV (name,ticker) or JSON {name: ticker} of company names to tag; empty = built-in list",
    )

    @field_validator("ingest_token_hashes")
    @classmethod
    def _valid_token_hashes(cls, value: str) -> str:
        from services.ingest.tokens import parse_hash_list  # lazily: the ingest package pulls in Kafka

        parse_hash_list(value)  # TokenConfigError (a ValueError) names the entry that is wrong
        return value


class ScorerSettings(_Group):
    """The scorer workers (`finsent worker`): batching, passes, their /metrics."""

    scorer_group: str = Field(
        "finsent-scorer", min_length=1, description="Consumer group (and faust app id) of the scorer workers"
    )
    scorer_session_timeout_seconds: float = Field(
        10.0, gt=0, description="Kafka session timeout of a scorer worker (Tansu: a join waits half of it)"
    )
    scorer_max_batch: int = Field(
        1024,
        ge=1,
        description="Largest micro-batch the scorer takes (a backlog drains faster in big ones)",
    )
    scorer_batch_seconds: float = Field(
        0.02,
        gt=0,
        description="Longest wait to fill a micro-batch before scoring what is there (20 ms: p99 154 ms "
        "at 100/s against 202 ms with 50 ms, and no worse at higher rates; a backlog fills batches at once; "
        "docs/performance.md#batch-window)",
    )
    scorer_slice_items: int = Field(
        256,
        ge=1,
        description="A large micro-batch is scored in slices of this many items, each stored "
        "while the model scores the next (one transaction per slice; the batch is acked after all)",
    )
    scorer_batches_in_flight: int = Field(
        2,
        ge=1,
        le=8,
        description="Micro-batches a worker works on at once: with 2, the next batch is parsed and "
        "scored while the previous one's last slice is stored (each batch is acked once stored); "
        "1 finishes a batch before taking the next",
    )
    scorer_tokens_per_pass: int = Field(
        2048,
        ge=16,
        description="Real tokens per unpadded forward pass of a BERT encoder (bert_core.inference.unpadded)",
    )
    scorer_inference_batch: int = Field(
        32,
        ge=1,
        description="Texts per padded forward pass, for encoders the unpadded path does not support "
        "(non-BERT); length-sorted, 32 measured best there",
    )
    scorer_fetch_max_wait_ms: int = Field(
        100,
        ge=1,
        description="Longest time the broker may hold a fetch of the worker (faust's fixed 1500 ms "
        "dominated latency on the embedded broker)",
    )
    scorer_gil_switch_ms: float = Field(
        0.5,
        gt=0,
        le=100,
        description="The worker's GIL switch interval (sys.setswitchinterval, ms; Python's default 5). "
        "A pass thread whose torch op has ended waits for the GIL while the event loop, the parser "
        "or the database thread runs Python; 0.5 ms measured 0.82 vs 0.75 of the model in a backlog "
        "(means), 0.05 ms as much but a worse p99 latency in a live stream "
        "(docs/performance.md#gil-switch-interval)",
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
    max_future_skew_seconds: float = Field(
        3600.0,
        ge=0,
        le=MAX_FUTURE_SKEW_SECONDS,
        description="How far past its receive time a news item's published_at may lie; later ones go to "
        "the DLQ as future_published_at. One hour covers clocks that drift and embargoed releases "
        "stamped minutes ahead; anything further is a wrong zone or a bad date, and would pull every "
        "dashboard range and the labelling window into the future. At most ten years",
    )
    # Stories (services.stories; docs/architecture.md): near-duplicate headlines grouped.
    story_clustering: bool = Field(
        True, description="Group near-duplicate headlines (re-published copies) into stories when stored"
    )
    story_window_hours: float = Field(
        24.0, ge=0, description="Copies join a story only if published within this many hours of a member"
    )
    story_similarity: float = Field(
        0.5,
        gt=0,
        le=1,
        description="Word-pair Jaccard similarity of normalised headlines from which two items are one story",
    )


class AlertSettings(_Group):
    """The alert detector and the alerter (`finsent alerter`); docs/alerts.md explains each."""

    # Alerts (docs/alerts.md explains each detector setting and how the defaults were chosen).
    alert_count: Literal["stories", "items"] = Field(
        "stories",
        description="What the spike detector counts: distinct stories (a story's copies once) or every item",
    )
    alert_bucket_seconds: int = Field(60, ge=1, description="Width of the event-time sentiment buckets")
    alert_window_buckets: int = Field(10, ge=1, description="Buckets in the detector's sliding window")
    alert_p_warning: float = Field(1e-5, gt=0, lt=1, description="p-value at or below which a window warns")
    alert_p_high: float = Field(1e-7, gt=0, lt=1, description="p-value for severity high")
    alert_p_critical: float = Field(1e-10, gt=0, lt=1, description="p-value for severity critical")
    alert_min_bearish: int = Field(
        5, ge=1, description="Share test: no alert with fewer bearish stories in the window"
    )
    alert_surge_min_bearish: int = Field(
        3, ge=1, description="Surge test: no alert with fewer bearish stories in the window"
    )
    alert_surge_short_buckets: int = Field(
        3, ge=1, description="Surge test: buckets of the shorter window it also judges (fast bursts)"
    )
    alert_baseline_half_life_hours: float = Field(
        6.0, gt=0, description="Half-life of the exponentially decayed baseline of each scope"
    )
    alert_warmup_minutes: float = Field(
        60.0, ge=0, description="Market history (event time) needed before anything may alert"
    )
    alert_resolve_after_minutes: float = Field(
        5.0, gt=0, description="An alert resolves after this long without a detection"
    )
    alert_cooldown_minutes: float = Field(
        30.0, ge=0, description="After resolving, new detections of the scope reopen the alert silently"
    )
    alert_renotify_minutes: float | None = Field(
        None, gt=0, description="Remind subscribers of a still-open alert this often; empty = never"
    )
    alert_allowed_lateness_seconds: float = Field(
        120.0, ge=0, description="How long the alerter waits for stragglers before judging a minute"
    )
    alert_live_horizon_minutes: float = Field(
        15.0,
        gt=0,
        description="A stream whose newest story is this recent is live: when it goes quiet, the wall "
        "clock closes its windows (a replay of older news is governed by event time alone)",
    )
    alerter_group: str = Field("finsent-alerter", min_length=1, description="Consumer group of the alerter")
    alerter_session_timeout_seconds: float = Field(
        10.0, gt=0, description="Kafka session timeout of the alerter (Tansu: a join waits half of it)"
    )
    alerter_max_batch: int = Field(500, ge=1, description="Most news.scored messages per alerter transaction")
    alerter_tick_seconds: float = Field(
        5.0, gt=0, description="Longest wait for news before the alerter checks the clock (idle tick)"
    )
    alerter_partition_idle_seconds: float = Field(
        30.0,
        gt=0,
        description="A news.scored partition silent this long stops holding back the event-time watermark",
    )
    alerter_checkpoint_hours: float = Field(
        6.0, gt=0, description="Event time of detector checkpoints kept, so late stories can be re-judged"
    )
    alerter_metrics_host: str = Field(
        "127.0.0.1", description="Address of the alerter's /metrics and /health server (0.0.0.0: all)"
    )
    alerter_metrics_port: int = Field(
        9465, ge=0, le=65535, description="Port of the alerter's /metrics and /health; 0 = any free port"
    )

    @model_validator(mode="after")
    def _consistent_detector(self) -> AlertSettings:
        # What services.alerting.detector.DetectorConfig requires (its p_learn follows
        # p_warning), checked here so `finsent config` and `doctor` say it, with the variables.
        p = {name: getattr(self, name) for name in ("alert_p_warning", "alert_p_high", "alert_p_critical")}
        if not p["alert_p_warning"] >= p["alert_p_high"] >= p["alert_p_critical"]:
            given = ", ".join(f"{_env(name)}={value:g}" for name, value in p.items())
            raise ValueError(
                "need FINSENT_ALERT_P_WARNING >= FINSENT_ALERT_P_HIGH >= FINSENT_ALERT_P_CRITICAL "
                f"(a smaller p-value is the more severe), got {given}"
            )
        if self.alert_baseline_half_life_hours * 3600 < self.alert_bucket_seconds:
            raise ValueError(
                f"FINSENT_ALERT_BASELINE_HALF_LIFE_HOURS={self.alert_baseline_half_life_hours:g} is shorter "
                f"than one bucket (FINSENT_ALERT_BUCKET_SECONDS={self.alert_bucket_seconds}): make it at "
                f"least {self.alert_bucket_seconds / 3600:g}"
            )
        return self


class DeliverySettings(_Group):
    """Sending alerts (`finsent dispatcher`): retries, timeouts, SMTP."""

    dispatcher_poll_seconds: float = Field(
        1.0, gt=0, description="Pause of `finsent dispatcher` between polls when there was nothing to do"
    )
    dispatcher_batch_size: int = Field(
        100, ge=1, description="Outbox rows fanned out, and deliveries claimed, per dispatcher cycle"
    )
    dispatcher_concurrency: int = Field(
        4, ge=1, description="Deliveries sent in parallel, so one slow receiver does not hold up the rest"
    )
    dispatcher_metrics_host: str = Field(
        "127.0.0.1", description="Address of the dispatcher's /metrics and /health server (0.0.0.0: all)"
    )
    dispatcher_metrics_port: int = Field(
        9466, ge=0, le=65535, description="Port of the dispatcher's /metrics and /health; 0 = any free port"
    )
    delivery_max_attempts: int = Field(8, ge=1, description="Attempts before a delivery is marked dead")
    delivery_backoff_initial_seconds: float = Field(
        2.0, gt=0, description="Pause after a delivery's first failed attempt (doubles, with jitter)"
    )
    delivery_backoff_max_seconds: float = Field(
        300.0, gt=0, description="Longest pause between two attempts of a delivery"
    )
    delivery_timeout_seconds: float = Field(
        10.0,
        gt=0,
        description="Deadline of one webhook or Slack request, connect to last byte; timeout of each SMTP "
        "operation, the whole e-mail exchange at most twice it. A round of sends ends by 8 x it + 5 s",
    )
    smtp_host: str | None = Field(None, description="SMTP server of the email channel; empty = none")
    smtp_port: int = Field(587, ge=1, le=65535, description="SMTP port (587: submission with STARTTLS)")
    smtp_user: str | None = Field(None, description="SMTP login; empty = no authentication")
    smtp_password_file: Path | None = Field(
        None, description="File holding the SMTP password (a subscription's --secret-ref overrides it)"
    )
    smtp_from: str = Field("finsent@localhost", description="Sender address of alert e-mails")
    smtp_starttls: bool = Field(True, description="Upgrade the SMTP connection with STARTTLS before login")


class DashboardSettings(_Group):
    """The dashboard (`finsent dashboard`, docs/dashboard.md)."""

    # Dashboard (docs/dashboard.md).
    dashboard_host: str = Field(
        "127.0.0.1", description="Address `finsent dashboard` listens on (0.0.0.0: all)"
    )
    dashboard_port: int = Field(8501, ge=1, le=65535, description="Port of `finsent dashboard`")
    dashboard_users_file: Path = Field(
        description="An older version's TOML file of dashboard users; `finsent dashboard users import-file` "
        "moves them into the database, where users now live",
    )
    dashboard_oidc_default_role: Literal["none", "viewer", "analyst", "admin"] = Field(
        "none",
        description="Role of an OIDC-authenticated user not among the dashboard users; none = refused",
    )
    dashboard_oidc_trust_email: bool = Field(
        False,
        description="Accept an OIDC e-mail that comes without an email_verified claim (only for a provider "
        "that issues verified addresses only); email_verified=false is refused regardless",
    )
    dashboard_oidc_provider: str | None = Field(
        None, description="Provider name for st.login when [auth] lists several; empty = the [auth] one"
    )
    dashboard_cache_seconds: float = Field(
        30.0, ge=0, description="How long dashboard query results are cached (st.cache_data TTL)"
    )
    dashboard_refresh_seconds: float = Field(
        15.0, ge=1, description="Refresh interval of the overview's live panel"
    )
    dashboard_live_minutes: int = Field(60, ge=5, description="Minutes of the newest news in the live panel")
    dashboard_page_size: int = Field(50, ge=5, le=500, description="Rows per page of the news browser")
    dashboard_export_max_rows: int = Field(
        10_000, ge=100, description="Most rows a news browser CSV export holds"
    )
    dashboard_label_window_days: float = Field(
        7.0, gt=0, description="The labelling queue looks for uncertain stories this far back from the newest"
    )


class LearningSettings(_Group):
    """Labels, holdouts, the promotion gate, retraining and its scheduler (docs/learning.md)."""

    # Labels, holdouts and the promotion gate (docs/learning.md).
    label_recent_share: float = Field(
        0.2,
        ge=0.0,
        lt=1.0,
        description="Share of analyst-labelled texts held out as the recent holdout (chosen by text hash, "
        "never trained on)",
    )
    recent_holdout_size: int = Field(
        500, ge=1, description="The gate evaluates on this many newest recent-holdout labels per task"
    )
    holdout_sentiment_data: Path | None = Field(
        None,
        description="Labelled file used as the frozen sentiment holdout; empty = the seed file's dev split, "
        "frozen to FINSENT_HOME/holdout the first time it is needed",
    )
    holdout_topic_data: Path | None = Field(
        None, description="Labelled file used as the frozen topic holdout; empty = as for sentiment"
    )
    gate_macro_f1_tolerance: float = Field(
        0.01, ge=0.0, description="Largest drop in frozen-holdout macro-F1 (per task) a challenger may show"
    )
    gate_recall_floor: float = Field(
        0.2, ge=0.0, le=1.0, description="Lowest per-class recall on the frozen holdout a challenger may show"
    )
    gate_recall_floors: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description='Per-class recall floors overriding the default, JSON: {"topic": {"IPO": 0.1}}',
    )
    gate_min_recent_improvement: float = Field(
        0.0,
        ge=0.0,
        description="Recent-holdout mean macro-F1 gain a challenger must exceed (0: strictly better)",
    )
    gate_min_recent_examples: int = Field(
        30,
        ge=1,
        description="Recent labels a task needs before improvement is required on it (fewer: no regression)",
    )
    # Retraining and its scheduler (docs/learning.md).
    retrain_min_new_labels: int = Field(
        50, ge=1, description="A retraining is skipped (with its reason logged) below this many new labels"
    )
    retrain_max_minutes: float = Field(
        10.0, gt=0, description="Time budget of one retraining's fine-tuning (the best checkpoint is kept)"
    )
    retrain_epochs: int = Field(3, ge=1, description="Epochs over new labels + replay within the time budget")
    retrain_learning_rate: float = Field(
        5e-5, gt=0, le=1e-2, description="Encoder learning rate of a warm-started retraining (heads: 10x)"
    )
    retrain_replay_ratio: float = Field(
        2.0, ge=0, description="Earlier (seed) rows mixed in per analyst label, against forgetting"
    )
    retrain_replay_min: int = Field(500, ge=0, description="At least this many replay rows per task")
    retrain_method: TrainMethod = Field(
        "full",
        description="full: every encoder weight trains; lora: the encoder stays frozen and low-rank "
        "adapters train, merged into the weights before the model is saved (docs/learning.md)",
    )
    retrain_lora_rank: int = Field(
        LoraOptions.rank, ge=1, le=256, description="Rank of each LoRA adapter (FINSENT_RETRAIN_METHOD=lora)"
    )
    retrain_lora_alpha: int = Field(
        LoraOptions.alpha, ge=1, description="LoRA scaling: an adapter's update is multiplied by alpha / rank"
    )
    retrain_lora_targets: list[str] = Field(
        default_factory=lambda: list(LORA_BERT_TARGETS),
        min_length=1,
        description="Encoder Linear layers that get adapters, by name suffix (JSON list)",
    )
    retrain_lora_learning_rate: float = Field(
        5e-4, gt=0, le=1e-1, description="Adapter learning rate of a LoRA retraining (heads: as for full)"
    )
    retrain_cron: str | None = Field(
        None, description="Crontab schedule of `finsent scheduler` (e.g. '0 2 * * *'); empty = the interval"
    )
    retrain_interval_minutes: float = Field(
        1440.0, gt=0, description="Interval of `finsent scheduler` when FINSENT_RETRAIN_CRON is empty"
    )
    scheduler_metrics_host: str = Field(
        "127.0.0.1", description="Address of the scheduler's /metrics and /health server (0.0.0.0: all)"
    )
    scheduler_metrics_port: int = Field(9467, ge=0, le=65535, description="0 picks a free port")
    retrain_misfire_grace_seconds: int = Field(
        3600, ge=1, description="A run missed by less than this (scheduler down) still runs, once"
    )

    @field_validator("retrain_cron")
    @classmethod
    def _valid_cron(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from apscheduler.triggers.cron import CronTrigger  # lazily: only when a schedule is set

        try:
            CronTrigger.from_crontab(value, timezone="UTC")  # as services.learning.scheduler reads it
        except ValueError as exc:
            raise ValueError(
                f"not a crontab expression (minute hour day month weekday, e.g. '0 2 * * *'): {exc}"
            ) from None
        return value

    @field_validator("gate_recall_floors")
    @classmethod
    def _known_recall_floors(cls, value: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        # The gate looks floors up by the frozen holdout's class names (always the packaged label
        # sets), exactly as written: a misspelt task or class would silently never apply.
        for task, floors in value.items():
            if task not in DEFAULT_LABELS:
                raise ValueError(f"unknown task {task!r}: use {' or '.join(map(repr, DEFAULT_LABELS))}")
            names = DEFAULT_LABELS[task]  # type: ignore[index]
            for name, floor in floors.items():
                if name not in names:
                    lowered = {n.lower(): n for n in names}
                    close = difflib.get_close_matches(name.lower(), lowered, n=1, cutoff=0.6)
                    hint = (
                        f"did you mean {lowered[close[0]]!r}?"
                        if close
                        else f"use one of {', '.join(map(repr, names))}"
                    )
                    raise ValueError(f"{task} has no class {name!r}: {hint}")
                if not 0.0 <= floor <= 1.0:
                    raise ValueError(f"the floor of {task} {name!r} is {floor:g}: a recall floor is 0 to 1")
        return value


class RuntimeSettings(_Group):
    """Shared by every service: logging, standby takeover, which addresses outbound requests may reach."""

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        "INFO", description="Lowest level logged (any case)"
    )
    log_format: Literal["console", "json"] = Field(
        "console", description="json: one JSON object per line, for production log shippers"
    )
    standby_poll_seconds: float = Field(
        1.0,
        gt=0,
        le=60,
        description="How often a standby alerter or scheduler tries the database lock held by the active "
        "one (and the active one checks it still holds it): the takeover delay after the active one dies",
    )
    outbound_allow: str = Field(
        "",
        description="Comma-separated networks (10.1.0.0/16, 127.0.0.1) and host names (hooks.internal; "
        ".internal for every name under it) that webhooks, Slack and feeds may reach besides public "
        "addresses; empty = public addresses only (loopback, private, link-local, multicast and "
        "reserved addresses are refused)",
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _level_any_case(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("outbound_allow")
    @classmethod
    def _valid_outbound_allow(cls, value: str) -> str:
        OutboundPolicy.parse(value)  # ValueError names the entry that is neither a network nor a name
        return value

    @property
    def outbound_policy(self) -> OutboundPolicy:
        return OutboundPolicy.parse(self.outbound_allow)


# Defaults that lie under `home`: a group cannot see `home`, so `Settings` fills these in
# (and docs/settings.md renders them with $FINSENT_HOME).
HOME_DEFAULTS: dict[str, Callable[[Path], Any]] = {
    "database_url": lambda home: f"sqlite:///{(home / 'finsent.db').as_posix()}",
    "ingest_tokens_file": lambda home: home / "ingest-tokens.json",
    "dashboard_users_file": lambda home: home / "dashboard-users.toml",
}

# Group attribute of `Settings` -> its class, in the order docs/settings.md and `finsent config`
# show them.
GROUPS: dict[str, type[BaseModel]] = {
    "inference": InferenceSettings,
    "training": TrainingSettings,
    "database": DatabaseSettings,
    "kafka": KafkaSettings,
    "ingest": IngestSettings,
    "scorer": ScorerSettings,
    "alerts": AlertSettings,
    "delivery": DeliverySettings,
    "dashboard": DashboardSettings,
    "learning": LearningSettings,
    "runtime": RuntimeSettings,
}

# Field name -> the group that holds it (field names are unique across groups).
FIELD_GROUPS: dict[str, str] = {
    field: group for group, model in GROUPS.items() for field in model.model_fields
}


def setting_value(settings: Settings, field: str) -> Any:
    """The value of a field named flat (`alert_p_high`), wherever its group keeps it."""
    group = FIELD_GROUPS.get(field)
    return getattr(getattr(settings, group) if group else settings, field)


def nest_flat(data: Mapping[str, Any]) -> dict[str, Any]:
    """Flat field names put into their groups: {"alert_p_high": x} -> {"alerts": {"alert_p_high": x}}.

    Already-nested data passes through; a flat key beside its group's value overrides that
    field in it. Keys of no group (`home`, unknown ones) stay where they are."""
    nested: dict[str, Any] = {}
    for key, value in data.items():
        if key in GROUPS and isinstance(value, BaseModel):
            value = dict(value)  # its fields, so flat keys can still be merged in
        if key in GROUPS and isinstance(value, dict):
            nested[key] = {**value, **nested.get(key, {})}
        elif key in FIELD_GROUPS:
            nested.setdefault(FIELD_GROUPS[key], {})[key] = value
        else:
            nested[key] = value
    return nested


def flat_source(source: PydanticBaseSettingsSource) -> PydanticBaseSettingsSource:
    """A copy of a pydantic-settings source that reads the flat variables (`FlatSettings`).

    A copy, so whatever the call overrode (`Settings(_env_file=None)`) still applies."""
    flat = copy.copy(source)
    flat.settings_cls = FlatSettings
    return flat


class _GroupedSource(PydanticBaseSettingsSource):
    """A settings source whose flat values are handed on in their groups (`nest_flat`)."""

    def __init__(self, source: PydanticBaseSettingsSource) -> None:
        super().__init__(source.settings_cls)
        self._source = source

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover
        return None, field_name, False  # unused: __call__ asks the wrapped source

    def __call__(self) -> dict[str, Any]:
        return nest_flat(self._source())


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FINSENT_", env_file=".env", extra="ignore")

    home: Path = Field(
        DEFAULT_HOME,
        validate_default=True,
        description="Where finsent keeps its state: the SQLite database (finsent.db), models/, logs/, "
        "holdout/, the ingest tokens and the stream state; the same from any working directory",
    )
    # Always given: `_route_flat_fields` supplies each group, so none needs a default here.
    inference: InferenceSettings
    training: TrainingSettings
    database: DatabaseSettings
    kafka: KafkaSettings
    ingest: IngestSettings
    scorer: ScorerSettings
    alerts: AlertSettings
    delivery: DeliverySettings
    dashboard: DashboardSettings
    learning: LearningSettings
    runtime: RuntimeSettings

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            _GroupedSource(init_settings),
            _GroupedSource(flat_source(env_settings)),
            _GroupedSource(flat_source(dotenv_settings)),
            _GroupedSource(flat_source(file_secret_settings)),
        )

    @model_validator(mode="before")
    @classmethod
    def _route_flat_fields(cls, data: Any) -> Any:
        # The sources have nested already; this serves Settings.model_validate({...flat...}) and
        # makes every group present, so the home defaults below are always filled in.
        if not isinstance(data, Mapping):
            return data
        nested = nest_flat(data)
        for group in GROUPS:
            nested.setdefault(group, {})
        return nested

    @field_validator(*sorted({FIELD_GROUPS[field] for field in HOME_DEFAULTS}), mode="wrap")
    @classmethod
    def _home_defaults(cls, value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo) -> Any:
        # `home` is absent when it was invalid: its error is the one reported, the default stands in.
        home = info.data.get("home", DEFAULT_HOME)
        if not isinstance(value, Mapping):
            return handler(value)
        unset = [f for f in HOME_DEFAULTS if FIELD_GROUPS[f] == info.field_name and f not in value]
        group = handler({**value, **{f: HOME_DEFAULTS[f](home) for f in unset}})
        group.__pydantic_fields_set__.difference_update(unset)  # still a default: model_fields_set says so
        return group

    @field_validator("home", mode="before")
    @classmethod
    def _blank_home_is_default(cls, value: object) -> object:
        # FINSENT_HOME= (set but empty) means the default, not the working directory.
        return DEFAULT_HOME if isinstance(value, str) and not value.strip() else value

    @field_validator("home")
    @classmethod
    def _absolute_home(cls, value: Path) -> Path:
        # `~` expanded and made absolute once, here: the child processes of `finsent run`, the
        # dashboard and the SQLite URL then all name the same folder whatever their working
        # directory.
        try:
            return value.expanduser().absolute()
        except RuntimeError as exc:  # no home directory to expand `~` against
            reason = str(exc).rstrip(". ")  # Python's own message ends in a full stop
            raise ValueError(f"{reason}; set FINSENT_HOME to an absolute path") from None

    @field_validator("home")
    @classmethod
    def _home_is_a_directory(cls, value: Path) -> Path:
        # Everything (database, models, logs) is created under it: a file there would fail
        # later, in whichever command first tries to create something.
        if value.exists() and not value.is_dir():
            raise ValueError(f"{value} exists and is not a directory")
        return value

    @model_validator(mode="after")
    def _consistent_connection_security(self) -> Settings:
        # Each problem is one line naming the variable to fix; `finsent` prints it before any
        # command runs, so a half-configured cluster login fails at start, not at first use.
        problem = _kafka_security_problem(self.kafka) or _database_tls_problem(self.database)
        if problem:
            raise ValueError(problem)
        return self

    # Everything finsent writes on its own lives under `home`; these are the only places that
    # name its sub-folders.
    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def encoders_dir(self) -> Path:
        """Pretrained encoders assembled from their packages (`finsent encoders install`)."""
        return self.models_dir / "encoders"

    @property
    def default_model_dir(self) -> Path:
        """The bootstrap model `finsent run` trains from the seed data when there is none."""
        return self.models_dir / "bootstrap"

    @property
    def model_cache_dir(self) -> Path:
        """Registered models fetched from the database, one folder per version."""
        return self.models_dir / "cache"

    @property
    def registry_models_dir(self) -> Path:
        """Where retraining saves each challenger (run-<id>)."""
        return self.models_dir / "registry"

    @property
    def full_model_dir(self) -> Path:
        """Where `finsent run` trains the full model that replaces the bootstrap one (in the background)."""
        return self.models_dir / "full"

    @property
    def upgrade_dir(self) -> Path:
        """The background upgrade's state file and lock (services.learning.upgrade_state)."""
        return self.home / "upgrade"

    @property
    def logs_dir(self) -> Path:
        """Logs of the broker and the services `finsent run` starts."""
        return self.home / "logs"

    @property
    def holdout_dir(self) -> Path:
        """The frozen holdout, written the first time the promotion gate needs it."""
        return self.home / "holdout"

    @property
    def faust_dir(self) -> Path:
        """The scorer worker's faust data directory (its table state)."""
        return self.home / "faust"


class _FlatSettingsBase(BaseSettings):
    model_config = Settings.model_config  # the same prefix, .env file and extras policy


def _flat_fields() -> dict[str, Any]:
    # Top-level fields (home) as they are, so their variables are read too.
    fields: dict[str, Any] = {
        name: (info.annotation, info) for name, info in Settings.model_fields.items() if name not in GROUPS
    }
    for model in GROUPS.values():
        for name, info in model.model_fields.items():
            fields[name] = (info.annotation, info)
    return fields


# Every field of every group side by side: what the environment, .env and secret files are
# read against, so each variable stays FINSENT_<FIELD>; also where code that wants a field's
# default or description by its flat name looks (FlatSettings.model_fields["kafka_timeout_seconds"]).
# Never instantiated.
FlatSettings: type[BaseSettings] = create_model("FlatSettings", __base__=_FlatSettingsBase, **_flat_fields())


_SASL_FIELDS = (
    "kafka_sasl_mechanism",
    "kafka_sasl_username",
    "kafka_sasl_password",
    "kafka_sasl_password_file",
)
_TLS_FIELDS = (
    "kafka_ssl_cafile",
    "kafka_ssl_certfile",
    "kafka_ssl_keyfile",
    "kafka_ssl_key_password",
    "kafka_ssl_key_password_file",
)
_DATABASE_TLS_FIELDS = ("database_sslmode", "database_sslrootcert", "database_sslcert", "database_sslkey")


def _env(field: str) -> str:
    return f"FINSENT_{field.upper()}"


def file_problem(path: Path, *, secret: bool = False) -> str | None:
    """Why `path` cannot be read as a file ("no such file", "is a directory", "empty", …), for
    every setting that names one (here and `finsent doctor`); None when it can. Reads its first
    byte, or a `secret` file whole, which must not be empty; never creates, and never opens a
    pipe or a device, whose read could hang start-up."""
    file = path.expanduser()
    try:
        if not file.is_file():
            if file.is_dir():
                return "is a directory"
            return "not a regular file" if file.exists() else "no such file"
        with file.open("rb") as opened:
            data = opened.read() if secret else opened.read(1)
    except OSError as exc:
        return (exc.strerror or type(exc).__name__).lower()
    if secret and not data.strip():
        return "empty"
    return None


def _unreadable(path: Path, *, secret: bool = False) -> str | None:
    """Why `path` cannot serve as a certificate, key or secret file; None when it can."""
    problem = file_problem(path, secret=secret)
    if problem is None:
        return None
    return f"{path} is empty" if problem == "empty" else f"cannot read {path}: {problem}"


def _kafka_security_problem(s: KafkaSettings) -> str | None:
    protocol = s.kafka_security_protocol
    where = f"with FINSENT_KAFKA_SECURITY_PROTOCOL={protocol}"
    sasl = protocol.startswith("SASL_")
    tls = protocol.endswith("SSL")
    if protocol != "PLAINTEXT" and s.kafka_bootstrap is None:
        return (
            f"FINSENT_KAFKA_SECURITY_PROTOCOL={protocol} needs FINSENT_KAFKA_BOOTSTRAP: the embedded broker "
            "speaks PLAINTEXT only"
        )
    if not sasl:
        stray = next((f for f in _SASL_FIELDS if getattr(s, f) is not None), None)
        if stray:
            return f"{_env(stray)} is set but {where} no SASL login is made; use SASL_SSL (or unset it)"
    else:
        if s.kafka_sasl_mechanism is None:
            return f"FINSENT_KAFKA_SASL_MECHANISM must be PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 {where}"
        if not s.kafka_sasl_username:
            return f"FINSENT_KAFKA_SASL_USERNAME must be set {where}"
        if (s.kafka_sasl_password is None) == (s.kafka_sasl_password_file is None):
            return f"set one of FINSENT_KAFKA_SASL_PASSWORD or FINSENT_KAFKA_SASL_PASSWORD_FILE {where}"
        if s.kafka_sasl_password is not None and not s.kafka_sasl_password.get_secret_value():
            return f"FINSENT_KAFKA_SASL_PASSWORD is empty {where}"
    if not tls:
        stray = next((f for f in _TLS_FIELDS if getattr(s, f) is not None), None)
        if stray:
            return f"{_env(stray)} is set but {where} the connection is not TLS; use SSL or SASL_SSL"
        return _file_problem(s, ("kafka_sasl_password_file",))
    if s.kafka_ssl_certfile is None:
        stray = next((f for f in _TLS_FIELDS[2:] if getattr(s, f) is not None), None)
        if stray:
            return f"{_env(stray)} needs FINSENT_KAFKA_SSL_CERTFILE (the client certificate it belongs to)"
    if s.kafka_ssl_key_password is not None and s.kafka_ssl_key_password_file is not None:
        return "set only one of FINSENT_KAFKA_SSL_KEY_PASSWORD and FINSENT_KAFKA_SSL_KEY_PASSWORD_FILE"
    return _file_problem(s, ("kafka_sasl_password_file", *_TLS_FIELDS))


def _file_problem(s: BaseModel, fields: tuple[str, ...]) -> str | None:
    for field in fields:
        value = getattr(s, field)
        if isinstance(value, Path):
            reason = _unreadable(value, secret=field.endswith("password_file"))
            if reason:
                return f"{_env(field)}: {reason}"
    return None


def _database_tls_problem(s: DatabaseSettings) -> str | None:
    given = [f for f in _DATABASE_TLS_FIELDS if getattr(s, f) is not None]
    if not given:
        return None
    if not s.database_url.startswith("postgresql"):
        return f"{_env(given[0])} applies only to a postgresql FINSENT_DATABASE_URL"
    return _file_problem(s, _DATABASE_TLS_FIELDS[1:])


# One entry of FINSENT_KAFKA_BOOTSTRAP: a host name or IPv4 address, then its port (an IPv6
# address goes in brackets: [::1]:9092); without a port the Kafka clients take 9092.
_BOOTSTRAP_HOST = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9._-]*[A-Za-z0-9_])?")
_BOOTSTRAP_FORMAT = "use host[:port][,host[:port]] (IPv6 in brackets: [::1]:9092)"


def bootstrap_problem(value: str) -> str | None:
    """Why `value` is not a list of Kafka bootstrap servers (host:port, comma-separated);
    None when it is."""
    entries = [entry.strip() for entry in value.split(",")]
    for entry in entries:
        problem = _bootstrap_entry_problem(entry)
        if problem:
            where = f"{entry!r}: " if len(entries) > 1 and entry else ""
            return f"{where}{problem}; {_BOOTSTRAP_FORMAT}"
    return None


def _bootstrap_entry_problem(entry: str) -> str | None:
    if not entry:
        return "an empty server between commas"
    if "://" in entry:
        return f"{entry!r}: give the server without a scheme"
    if entry.startswith("["):
        host, bracket, rest = entry[1:].partition("]")
        if not bracket:
            return f"{entry!r} has no closing ']'"
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return f"[{host}] is not an IPv6 address"
        if not rest:
            return None  # no port: the Kafka clients take 9092
        if not rest.startswith(":"):
            return f"{rest!r} after ']' is not ':port'"
        port = rest[1:]
    else:
        host, colon, port = entry.partition(":")
        if ":" in port:
            return f"{entry!r} has more than one ':'"
        if not _BOOTSTRAP_HOST.fullmatch(host):
            return f"{host!r} is not a host name or address"
        if not colon:
            return None  # no port: the Kafka clients take 9092
    if not re.fullmatch(r"[0-9]{1,5}", port) or not 1 <= int(port) <= 65535:
        return f"port {port!r} is not a number from 1 to 65535"
    return None


# The host and port of a database URL as SQLAlchemy's make_url finds them
# (sqlalchemy.engine.url._parse_url), checked here without importing SQLAlchemy, which most
# commands never need (and the pure modules that read settings must not import).
_URL_HOST_PORT = re.compile(
    r"""
    [\w+]+://
    (?:[^:/]*(?::[^@]*)?@)?
    (?:(?:\[[^/?]+\]|[^/:?]+)?(?::(?P<port>[^/?]*))?)?
    """,
    re.X,
)


def database_url_problem(value: str) -> str | None:
    """What SQLAlchemy would refuse in a database URL of a supported scheme (a port that is not
    a number, as int() reads it); None when there is nothing."""
    match = _URL_HOST_PORT.match(value)
    port = match["port"] if match else None
    if port is None:
        return None
    if not port:
        return "no port after the ':'"
    if not re.fullmatch(r"[0-9]{1,5}", port):
        return f"port {port!r} is not a number"
    if not 1 <= int(port) <= 65535:
        return f"port {port} is not from 1 to 65535"
    return None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
