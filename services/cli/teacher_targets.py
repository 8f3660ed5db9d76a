"""`finsent teacher-targets`: a trained teacher's soft targets, computed once into a file.

A student then distils from the file (`finsent train --soft-targets FILE`, or by default from
the file shipped beside the seed data) without loading the teacher: the MPNet teacher costs
hours on a CPU without bf16 (docs/performance.md#encoders-issue-29).
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from services.cli.choices import TrainPrecision
from services.settings import get_settings


def teacher_targets(
    out: Annotated[
        Path,
        typer.Option(
            dir_okay=False,
            help="The .npz to write; to ship it with the seed data: bert_core/seed_data/soft_targets.npz",
        ),
    ],
    teacher: Annotated[
        list[Path] | None,
        typer.Option(
            file_okay=False,
            help="Teacher model directory (e.g. `finsent train --encoder mpnet-base --out DIR`), trained "
            "on the same files, seed and dev fraction; give it more than once for an ensemble (the "
            "mean of the teachers' probabilities, as `finsent train --teacher A --teacher B`)",
        ),
    ] = None,
    targets: Annotated[
        list[Path] | None,
        typer.Option(
            "--targets",
            dir_okay=False,
            help="A soft-targets file computed before, averaged into the ensemble in place of "
            "running its teacher again (same files and split); repeatable",
        ),
    ] = None,
    head_members: Annotated[
        list[str] | None,
        typer.Option(
            "--head-members",
            metavar="HEAD=N[,N]",
            help="Average only these members for one head, numbered from 1: the --teacher "
            "directories in order, then the --targets files (e.g. `topic=1,2 --head-members "
            "sentiment=1`); a head not named averages all; repeatable",
        ),
    ] = None,
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
    label sets, the files' sha256s, the split and this command. Several teachers (`--teacher`
    again, or `--targets` files scored before) give their mean."""
    from bert_core import DEFAULT_LABELS, DataError, chosen_members, load_soft_targets
    from services.cli.errors import fail, require_dirs, require_files

    settings = get_settings()
    teachers, files = teacher or [], targets or []
    if not teachers and not files:
        fail("give --teacher DIR (a trained teacher model), or --targets FILE twice or more to average files")
    if not teachers and len(files) == 1:
        fail(f"{files[0]} alone is a soft-targets file already: add a --teacher or another --targets")
    if out.exists() and not overwrite:
        fail(f"{out} exists; pass --overwrite to replace it")
    if out.suffix != ".npz":
        fail(f"{out}: a soft-targets file ends in .npz")
    data_args: list[str] = []
    if sentiment_data is None and topic_data is None:
        sentiment_data, topic_data = settings.training.sentiment_data, settings.training.topic_data
        typer.echo(f"scoring the seed data: {sentiment_data}, {topic_data}", err=True)
    else:
        for flag, path in (("--sentiment-data", sentiment_data), ("--topic-data", topic_data)):
            if path is not None:
                data_args += [flag, str(path)]
    chosen = {}
    for value in head_members or []:
        head, numbers = parse_head_members(value)
        if head in chosen:
            fail(f"--head-members {value}: {head} is named twice")
        chosen[head] = numbers
    try:
        chosen_members(len(teachers) + len(files), list(DEFAULT_LABELS), chosen)  # as the run will
    except DataError as exc:
        fail(str(exc))
    require_files([sentiment_data, topic_data])
    require_dirs(teachers, "model directory")
    try:  # light, and says "no such soft-targets file" itself
        loaded_files = [(f, load_soft_targets(f)) for f in files]
    except DataError as exc:
        fail(str(exc))
    import torch

    from bert_core import (  # torch and transformers: after the checks
        LoadedModel,
        compute_ensemble_targets,
        cpu_has_bf16,
        load_model_dir,
        save_soft_targets,
    )

    torch.set_num_threads(settings.inference.torch_threads)
    first: LoadedModel | None = load_model_dir(teachers[0]) if teachers else None
    if first is not None:
        recorded = {k: first.config.training.get(k) for k in ("seed", "dev_fraction")}
    else:
        recorded = dict(loaded_files[0][1].manifest.split)
    if seed is None:
        recorded_seed = recorded.get("seed")
        seed = settings.training.seed if recorded_seed is None else int(recorded_seed)
    if dev_fraction is None:
        fraction = recorded.get("dev_fraction")
        dev_fraction = float(settings.training.dev_fraction if fraction is None else fraction)
    split_args = ["--seed", str(seed), "--dev-fraction", str(dev_fraction)]
    tail = [*data_args, *split_args, "--precision", precision.value]

    def command_of(*members: str) -> str:
        return shlex.join(["finsent", "teacher-targets", *members, "--out", str(out), *tail])

    preloaded = {teachers[0]: first} if first is not None else {}
    del first  # the first teacher's model lives only until its turn to score

    def loader(directory: Path) -> Callable[[], LoadedModel]:
        return lambda: preloaded.pop(directory, None) or load_model_dir(directory)

    members = [a for t in teachers for a in ("--teacher", str(t))]
    members += [a for f in files for a in ("--targets", str(f))]
    members += [a for v in head_members or [] for a in ("--head-members", v)]
    bf16 = precision == TrainPrecision.bf16 or (precision == TrainPrecision.auto and cpu_has_bf16())
    started = time.monotonic()
    paths = {"sentiment": sentiment_data, "topic": topic_data}
    result = compute_ensemble_targets(
        [(command_of("--teacher", str(t)), loader(t)) for t in teachers],
        loaded_files,
        {task: path for task, path in paths.items() if path is not None},
        seed=seed,
        dev_fraction=dev_fraction,
        command=command_of(*members),
        bf16=bf16,
        batch_size=batch_size,
        head_members=chosen,
    )
    save_soft_targets(out, result, overwrite=overwrite)
    kind = "teacher" if len(teachers) + len(files) == 1 else "ensemble"
    typer.echo(
        f"wrote soft targets of {kind} {result.manifest.teacher.get('version')} for {result.manifest.rows} "
        f"training texts to {out} ({out.stat().st_size / 1024:.0f} KiB, {'bf16' if bf16 else 'fp32'}) in "
        f"{(time.monotonic() - started) / 60:.1f} min"
    )


def parse_head_members(value: str) -> tuple[str, list[int]]:
    """`topic=1,2` -> ("topic", [1, 2]); anything else is one usage line."""
    from services.cli.errors import fail

    head, sep, numbers = value.partition("=")
    try:
        parsed = [int(n) for n in numbers.split(",")]
    except ValueError:
        parsed = []
    if not sep or not head.strip() or not parsed:
        fail(f"--head-members {value!r}: give HEAD=N[,N], members numbered from 1 (e.g. topic=1,2)")
    return head.strip(), parsed
