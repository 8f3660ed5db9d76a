"""Which model a service serves: the one owner of the choice `finsent worker` and `finsent run` share.

The order is: a pinned directory (FINSENT_MODEL, or `finsent run --model`), else the
registry's champion, else the bootstrap model that `finsent run` trains from the seed data
into FINSENT_HOME. A pinned worker ignores the registry; an unpinned one follows the champion
afterwards (services/scorer/model_reload.py). `finsent run` adopts the bootstrap model as the
first champion when the registry has none, so that a retraining promoted later (by the
scheduler or `finsent retrain --now`) reaches its worker without a restart.

`choose_model` and `after_refusal` are the decisions, pure: they take what was looked up.
The other functions look it up (the filesystem, the registry, the artifact store) or make it
(training the bootstrap model). Whatever makes serving impossible is a `ServingError` whose
message is one line for the operator; the CLI prints it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar, cast

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from bert_core import VerifiedModelDir
    from services.scorer.batch import PredictorLike
    from services.scorer.model_reload import ModelRef
    from services.settings import Settings

log = logging.getLogger(__name__)

P = TypeVar("P", bound="PredictorLike")
T = TypeVar("T")
MANIFEST = "manifest.json"


class ServingError(ValueError):
    """No model can be served as asked; the message says why and what to do instead."""


def is_model_dir(path: Path) -> bool:
    """A saved finsent model is there (its manifest; the files are verified when loaded)."""
    return (path / MANIFEST).is_file()


def choose_model(
    *, pinned: Path | None, champion: ModelRef | None, bootstrap: Path, bootstrap_ready: bool
) -> ModelRef | Path:
    """The model a worker starts with: the pinned directory, else the registry's champion,
    else the bootstrap model if one was saved."""
    if pinned is not None:
        return pinned
    if champion is not None:
        return champion
    if not bootstrap_ready:
        raise ServingError(
            "no model: register one with `finsent models register DIR --champion`, set FINSENT_MODEL to a "
            f"model directory, or run `finsent run` once to bootstrap one into {bootstrap}"
        )
    return bootstrap


def expected_model(*, pinned: Path | None, champion: Path | None, bootstrap: Path) -> tuple[Path, str]:
    """The directory a worker would serve, in `choose_model`'s order, with where the choice
    comes from in words (for `finsent doctor`, which checks it before any worker runs)."""
    if pinned is not None:
        return pinned, "FINSENT_MODEL"
    if champion is not None:
        return champion, "the registry's champion"
    return bootstrap, "the bootstrap model"


def after_refusal(version: str, reason: str, *, bootstrap: Path, bootstrap_ready: bool) -> Path:
    """What a starting worker serves when the champion fails verification: the bootstrap
    model, because a worker with no model serves nothing at all; without one, nothing."""
    if not bootstrap_ready:
        raise ServingError(f"the registry's champion {version} cannot be served: {reason}")
    return bootstrap


def follows_registry(settings: Settings) -> bool:
    """Whether the worker follows the registry's champion (it does unless FINSENT_MODEL pins a model)."""
    return settings.inference.model is None


def registry_champion(sessions: Callable[[], Session]) -> ModelRef | None:
    """The registry's champion as the scorer serves it, or None when there is none."""
    from services.learning.registry import champion
    from services.scorer.model_reload import ModelRef

    with sessions() as session:
        row = champion(session)
        return None if row is None else ModelRef(row.version, Path(row.path), row.sha256, row.manifest_sha256)


def localize(sessions: Callable[[], Session], ref: ModelRef, *, cache_dir: Path) -> VerifiedModelDir:
    """The champion's files on this host: the registered directory if it verifies here, else
    the copy fetched from the registry's database into `cache_dir`, with what was verified
    (the loader does not hash it again). A stored copy that fails verification is refused
    (`ModelRefused`); a database error propagates (retried)."""
    from services.learning.artifact_store import ArtifactError, verified_model_dir
    from services.scorer.model_reload import ModelRefused

    with sessions() as session:
        try:
            return verified_model_dir(session, ref.version, cache_dir=cache_dir)
        except ArtifactError as exc:
            raise ModelRefused(str(exc)) from None


def worker_model(settings: Settings, sessions: Callable[[], Session]) -> ModelRef | Path:
    """`choose_model` on this host's settings and registry."""
    pinned = settings.inference.model
    if pinned is not None and not pinned.is_dir():
        raise ServingError(f"FINSENT_MODEL={pinned}: no such directory")
    bootstrap = settings.default_model_dir
    return choose_model(
        pinned=pinned,
        champion=None if pinned is not None else registry_champion(sessions),
        bootstrap=bootstrap,
        bootstrap_ready=is_model_dir(bootstrap),
    )


def load_initial(
    settings: Settings,
    sessions: Callable[[], Session],
    choice: ModelRef | Path,
    load: Callable[[Path | VerifiedModelDir], P],
) -> P:
    """`load` the chosen model; a champion that fails verification falls back to the
    bootstrap model (loudly, see `after_refusal`)."""
    from services.scorer.model_reload import ModelRefused, load_verified

    if isinstance(choice, Path):
        return load(choice)
    try:
        choice = choice.localized(localize(sessions, choice, cache_dir=settings.model_cache_dir))
        return cast("P", load_verified(choice, load))
    except ModelRefused as exc:
        bootstrap = settings.default_model_dir
        fallback = after_refusal(
            choice.version, str(exc), bootstrap=bootstrap, bootstrap_ready=is_model_dir(bootstrap)
        )
        log.error(
            "refusing the registry's champion %s (%s); serving %s instead", choice.version, exc, fallback
        )
        return load(fallback)


def check_pinned(pinned: Path | None) -> None:
    """A directory given to `finsent run` (--model or FINSENT_MODEL) must hold a saved model."""
    if pinned is None:
        return
    if not pinned.exists():
        raise ServingError(f"{pinned}: no such directory")
    if not pinned.is_dir():
        raise ServingError(f"{pinned}: not a directory (give a finsent model directory)")
    if not is_model_dir(pinned):
        raise ServingError(f"{pinned} is not a finsent model directory (no manifest.json)")


def bootstrap_model(settings: Settings, model_dir: Path, *, announce: Callable[[str], None]) -> Path:
    """Train the default model from the seed data into `model_dir` unless a verified one is
    already there (time-boxed by FINSENT_BOOTSTRAP_MINUTES); `announce` is told before training."""
    from bert_core import ModelIntegrityError, TrainConfig, verify_model_dir
    from bert_core.encoders import encoder_path

    if is_model_dir(model_dir):
        try:
            verify_model_dir(model_dir)
            return model_dir
        except ModelIntegrityError as exc:
            raise ServingError(f"{exc}; delete {model_dir} to retrain it") from None
    for path in (settings.training.sentiment_data, settings.training.topic_data):
        if not path.is_file():
            raise ServingError(
                f"seed data {path} not found; set FINSENT_SENTIMENT_DATA / FINSENT_TOPIC_DATA "
                "or FINSENT_MODEL to an existing model directory"
            )
    seeds = {settings.training.sentiment_data.parent, settings.training.topic_data.parent}
    where = (
        f"in {seeds.pop()}"
        if len(seeds) == 1
        else f"{settings.training.sentiment_data}, {settings.training.topic_data}"
    )
    announce(
        f"no model at {model_dir}: training one from the seed data {where} "
        f"(budget {settings.training.bootstrap_minutes:g} min on {settings.inference.torch_threads} threads; "
        "`finsent train` makes a better one without the time box)"
    )
    import torch

    from bert_core import train_model

    torch.set_num_threads(settings.inference.torch_threads)
    train_model(
        {"sentiment": settings.training.sentiment_data, "topic": settings.training.topic_data},
        model_dir,
        TrainConfig(
            base_model=encoder_path(settings.training.base_model, settings.encoders_dir),
            max_length=settings.inference.max_length,
            seed=settings.training.seed,
            epochs=settings.training.bootstrap_epochs,
            max_minutes=settings.training.bootstrap_minutes,
        ),
        dev_fraction=settings.training.dev_fraction,
    )
    return model_dir


class OnDatabase(Protocol):
    """Runs `action(url)` on the configured database; the caller decides what its errors become."""

    def __call__(self, action: Callable[[str], T]) -> T: ...


def run_model(
    settings: Settings,
    *,
    pinned: Path | None,
    on_database: OnDatabase,
    announce: Callable[[str], None],
    warn: Callable[[str], None],
) -> Path:
    """The directory `finsent run` serves. Pinned: that one (trained if missing). Otherwise
    the registry's champion; with none, the bootstrap model (trained if missing), adopted as
    the champion."""
    if pinned is not None:
        return bootstrap_model(settings, pinned, announce=announce)
    return on_database(lambda url: _champion_or_bootstrap(settings, url, announce=announce, warn=warn))


def _champion_or_bootstrap(
    settings: Settings, url: str, *, announce: Callable[[str], None], warn: Callable[[str], None]
) -> Path:
    from services.learning.artifact_store import local_model_dir
    from services.learning.registry import RegistryError, champion, promote, register_model
    from services.storage import make_engine, session_factory

    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            row = champion(session)
            if row is not None:  # the registered directory, or the registry's copy fetched here
                try:
                    return local_model_dir(session, row.version, cache_dir=settings.model_cache_dir)
                except RegistryError as exc:  # the worker it starts says so again, and falls back
                    warn(f"warning: the champion {row.version} has no usable copy here: {exc}")
                    return Path(row.path)
        model_dir = bootstrap_model(settings, settings.default_model_dir, announce=announce)
        now = datetime.now(UTC)
        try:
            with session_factory(engine).begin() as session:
                adopted = register_model(
                    session, model_dir, note="bootstrap model adopted by `finsent run`", now=now
                )
                promote(
                    session, adopted.version, by="finsent run", reason="first champion (bootstrap)", now=now
                )
        except RegistryError as exc:
            raise ServingError(
                f"the registry has no champion and the bootstrap model cannot be adopted: {exc}"
            ) from None
        return model_dir
    finally:
        engine.dispose()
