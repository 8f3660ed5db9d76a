"""`finsent teacher-targets`: a trained teacher's soft targets, computed once into a file.

A student then distils from the file (`finsent train --soft-targets FILE`, or by default from
the file shipped beside the seed data) without loading the teacher: the MPNet teacher costs
hours on a CPU without bf16 (docs/performance.md#encoders-issue-29).
"""

from __future__ import annotations

import shlex
import time
from pathlib import Path
from typing import Annotated

import typer

from services.cli.choices import TrainPrecision
from services.settings import get_settings


def teacher_targets(
    teacher: Annotated[
        Path,
        typer.Option(
            file_okay=False,
            help="Teacher model directory (e.g. `finsent train --encoder mpnet-base --out DIR`), trained "
            "on the same files, seed and dev fraction",
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            dir_okay=False,
            help="The .npz to write; to ship it with the seed data: bert_core/seed_data/soft_targets.npz",
        ),
    ],
    sentiment_data: Annotated[
        Path | None,
        typer.Option(
            dir_okay=False,
            help="Sentiment file (text,label); with neither file given, both seed files "
            "(FINSENT_SENTIMENT_DATA, FINSENT_TOPIC_DATA: the packaged set by default)",
        ),
    ] = None,
    topic_data: Annotated[Path | None, typer.Option(dir_okay=False, help="Topic file (text,label)")] = None,
    seed: Annotated[
        int | None, typer.Option(help="Split seed; default: the one the teacher trained with")
    ] = None,
    dev_fraction: Annotated[
        float | None,
        typer.Option(min=0.01, max=0.99, help="Dev share; default: the one the teacher trained with"),
    ] = None,
    precision: Annotated[
        TrainPrecision,
        typer.Option(help="auto: bf16 where the CPU has bf16 units, else fp32 (stored as float16 anyway)"),
    ] = TrainPrecision.auto,
    batch_size: Annotated[int, typer.Option(min=1, help="Texts per padded pass")] = 64,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out file")] = False,
) -> None:
    """Compute a teacher's probabilities for both heads once, for `finsent train --soft-targets`.

    Every training-split text of the files (the split the teacher trained on; dev texts are
    never scored), float16, keyed by a hash of the text, with a manifest of the teacher, the
    label sets, the files' sha256s, the split and this command."""
    from bert_core import compute_soft_targets, cpu_has_bf16, load_model_dir, save_soft_targets
    from services.cli.errors import fail

    settings = get_settings()
    if out.exists() and not overwrite:
        fail(f"{out} exists; pass --overwrite to replace it")
    if out.suffix != ".npz":
        fail(f"{out}: a soft-targets file ends in .npz")
    command = ["finsent", "teacher-targets", "--teacher", str(teacher), "--out", str(out)]
    if sentiment_data is None and topic_data is None:
        sentiment_data, topic_data = settings.training.sentiment_data, settings.training.topic_data
        typer.echo(f"scoring the seed data: {sentiment_data}, {topic_data}", err=True)
    else:
        for flag, path in (("--sentiment-data", sentiment_data), ("--topic-data", topic_data)):
            if path is not None:
                command += [flag, str(path)]
    import torch

    torch.set_num_threads(settings.inference.torch_threads)
    loaded = load_model_dir(teacher)
    training = loaded.config.training
    seed = int(training.get("seed", settings.training.seed)) if seed is None else seed
    if dev_fraction is None:
        dev_fraction = float(training.get("dev_fraction", settings.training.dev_fraction))
    command += ["--seed", str(seed), "--dev-fraction", str(dev_fraction), "--precision", precision.value]
    bf16 = precision == TrainPrecision.bf16 or (precision == TrainPrecision.auto and cpu_has_bf16())
    started = time.monotonic()
    paths = {"sentiment": sentiment_data, "topic": topic_data}
    targets = compute_soft_targets(
        loaded,
        {task: path for task, path in paths.items() if path is not None},
        seed=seed,
        dev_fraction=dev_fraction,
        command=shlex.join(command),
        bf16=bf16,
        batch_size=batch_size,
    )
    save_soft_targets(out, targets, overwrite=overwrite)
    typer.echo(
        f"wrote soft targets of teacher {loaded.manifest.version} for {targets.manifest.rows} training "
        f"texts to {out} ({out.stat().st_size / 1024:.0f} KiB, {'bf16' if bf16 else 'fp32'}) in "
        f"{(time.monotonic() - started) / 60:.1f} min"
    )
