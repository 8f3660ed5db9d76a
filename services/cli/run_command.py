"""`finsent run`: the main job on its embedded default.

Until the streaming pipeline lands, the main job is: make sure a model exists
(bootstrap-train one from the seed data if not), report its dev metrics, and label
a sample of headlines.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from services.settings import get_settings

SAMPLE_HEADLINES = (
    "$AAPL beats on earnings and raises full-year guidance",
    "Oil slumps as OPEC+ signals more supply, energy stocks slide",
    "Fed holds rates steady, signals patience on future cuts",
    "Bank shares plunge after regulator opens probe into lending practices",
    "Company X names new chief financial officer",
)


def bootstrap_model(model_dir: Path) -> Path:
    """Train the default model from the seed data unless a verified one is already there."""
    from bert_core import TrainConfig, verify_model_dir
    from bert_core.errors import ModelIntegrityError
    from bert_core.recipes import train_model
    from services.cli.errors import fail

    settings = get_settings()
    if (model_dir / "manifest.json").is_file():
        try:
            verify_model_dir(model_dir)
            return model_dir
        except ModelIntegrityError as exc:
            fail(f"{exc}; delete {model_dir} to retrain it")
    for path in (settings.sentiment_data, settings.topic_data):
        if not path.is_file():
            fail(
                f"seed data {path} not found; set FINSENT_SENTIMENT_DATA / FINSENT_TOPIC_DATA "
                "or FINSENT_MODEL to an existing model directory"
            )
    typer.echo(
        f"no model at {model_dir}: training one from the seed data "
        f"(budget {settings.bootstrap_minutes:g} min on {settings.torch_threads} threads)"
    )
    import torch

    torch.set_num_threads(settings.torch_threads)
    train_model(
        {"sentiment": settings.sentiment_data, "topic": settings.topic_data},
        model_dir,
        TrainConfig(
            base_model=settings.base_model,
            max_length=settings.max_length,
            seed=settings.seed,
            epochs=settings.bootstrap_epochs,
            max_minutes=settings.bootstrap_minutes,
        ),
        dev_fraction=settings.dev_fraction,
    )
    return model_dir


def run(
    model: Annotated[
        Path | None,
        typer.Option(help="Model directory (env FINSENT_MODEL; default FINSENT_HOME/models/bootstrap)"),
    ] = None,
) -> None:
    """Bootstrap the model if needed, show its dev metrics, and label sample headlines."""
    from bert_core import Predictor, format_report

    settings = get_settings()
    model_dir = bootstrap_model(model or settings.model or settings.default_model_dir)
    predictor = Predictor.load(model_dir, precision=settings.precision, threads=settings.torch_threads)
    typer.echo(f"model {predictor.version} at {model_dir} ({predictor.precision})")
    for task, report in predictor.loaded.metrics.get("dev", {}).items():
        typer.echo(format_report(f"{task} (dev split)", report))
    for pred, text in zip(predictor.predict(list(SAMPLE_HEADLINES)), SAMPLE_HEADLINES, strict=True):
        typer.echo(json.dumps({"text": text, **pred.to_dict()}))
