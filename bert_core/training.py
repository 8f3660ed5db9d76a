"""Fine-tuning the multi-task classifier on per-task labelled sets.

The topic and sentiment sets label different texts, so every batch comes from one
task and that task's head gets the cross-entropy of its labels; batches of both tasks are
interleaved at random, so each epoch sees every example of both sets once. With soft
targets from teacher models (`teacher_targets`, the teachers' mean probabilities), the other
heads learn from the same batch too: every headline teaches both heads, the one its label is
for from the label, the others from the teachers' probabilities (cross-task distillation).
With an `own_task_weight` > 0 (one for all tasks, or per task) the labelled head also learns
part from the teachers' soft targets for its own task (self- or ensemble distillation).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import logging
import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from bert_core.adversarial import FGM
from bert_core.artifacts import ModelConfig, load_model_dir
from bert_core.augment import SubstitutionPool, augment_texts, cashtag_pool
from bert_core.averaging import WeightAverage
from bert_core.batching import Batch, bucketed_batches, collate, tokenize
from bert_core.config import ClassWeighting, MemoryOptions, Pooling, TrainConfig, TrainPrecision
from bert_core.data import LabelledData
from bert_core.encoder import load_encoder
from bert_core.errors import DataError, ModelConfigError
from bert_core.evaluation import evaluate_sets, mean_macro_f1
from bert_core.inference.cpu import cpu_has_bf16
from bert_core.inference.passes import predict_proba
from bert_core.lora import adapter_state, add_lora, merge_lora
from bert_core.memory import LexicalMemory
from bert_core.model import MultiTaskClassifier

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    model: MultiTaskClassifier
    tokenizer: PreTrainedTokenizerBase
    model_config: ModelConfig
    dev_reports: dict[str, dict[str, Any]]
    history: list[dict[str, Any]] = field(default_factory=list)
    parent_version: str | None = None
    seconds: float = 0.0
    # method "lora": the adapters and heads before merging (`bert_core.lora.adapter_state`)
    adapter: dict[str, torch.Tensor] | None = None
    # task -> the lexical memory beside its head (`config.memory`), built from the training texts
    memories: dict[str, LexicalMemory] = field(default_factory=dict)


def class_weights(labels: list[int], n_classes: int, scheme: ClassWeighting) -> torch.Tensor:
    """Loss weights against class imbalance, normalised to mean 1 over present classes.

    `sqrt_inverse` weighs a class by 1/sqrt(frequency), `inverse` by 1/frequency. Measured
    on the seed data (docs/performance.md#training-recipe), unweighted loss with macro-F1
    model selection did as well on sentiment macro-F1 and better everywhere else, so `none`
    is the default.
    """
    counts = np.bincount(np.asarray(labels), minlength=n_classes).astype(np.float64)
    if scheme == "none":
        weights = np.ones(n_classes)
    else:
        freq = np.where(counts > 0, counts / counts.sum(), 1.0)
        weights = 1.0 / (np.sqrt(freq) if scheme == "sqrt_inverse" else freq)
        weights = np.where(counts > 0, weights, 0.0)
        weights = weights / weights[counts > 0].mean()
    return torch.tensor(weights, dtype=torch.float32)


def lr_factor(step: int, *, warmup: int, total: int, time_progress: float = 0.0) -> float:
    """Linear warm-up, then linear decay to 0 at the end of training.

    Progress is the larger of step progress and time progress (elapsed / budget), so a
    run with a time budget still decays to 0 at its deadline on a slower or busier
    machine instead of being cut off at a high learning rate.
    """
    if step < warmup:
        return (step + 1) / max(warmup, 1)
    step_progress = (step - warmup) / max(total - warmup, 1)
    return max(0.0, 1.0 - max(step_progress, time_progress))


def resolve_train_precision(precision: TrainPrecision) -> Literal["fp32", "bf16"]:
    """`auto`: bf16 mixed precision where the CPU has bf16 units, else fp32.

    Mixed precision keeps the weights, gradients and AdamW state in fp32 and runs the matrix
    products in bf16 (torch autocast): 2.3x faster steps on an AVX512-BF16 CPU, at the
    measured accuracy there (docs/performance.md#training-recipe). Without bf16 units it would
    be emulated and slower than fp32, so `auto` never picks it there; asking for it anyway is
    honoured with a warning.
    """
    if precision not in ("auto", "fp32", "bf16"):
        raise ModelConfigError(f"training precision must be auto, fp32 or bf16, not {precision!r}")
    if precision == "auto":
        return "bf16" if cpu_has_bf16() else "fp32"
    if precision == "bf16" and not cpu_has_bf16():
        log.warning("bf16 training requested on a CPU without bf16 units: emulated, slower than fp32")
    return precision


def _build_model(
    config: TrainConfig, label_names: Mapping[str, list[str]]
) -> tuple[MultiTaskClassifier, PreTrainedTokenizerBase, str, str | None]:
    if config.init_from:
        loaded = load_model_dir(config.init_from)
        for task, names in label_names.items():
            if loaded.config.labels.get(task) != list(names):
                raise ModelConfigError(
                    f"{config.init_from}: its {task} labels differ from the training labels; "
                    "warm start needs the same label set"
                )
        model = loaded.model
        model.dropout.p = config.dropout
        return model, loaded.tokenizer, loaded.config.base_model, loaded.manifest.version
    encoder, tokenizer, base_name = load_encoder(config.base_model)
    model = MultiTaskClassifier(encoder, label_names, pooling=config.pooling, dropout=config.dropout)
    return model, tokenizer, base_name, None


def _param_groups(model: MultiTaskClassifier, config: TrainConfig) -> list[dict[str, Any]]:
    """AdamW groups; frozen word embeddings are left out.

    Freezing the 30k x hidden word-embedding matrix (half of MiniLM's weights) makes a
    step 1.6x faster on CPU (dense embedding gradients and their AdamW update dominate)
    and keeps rare tokens' pretrained vectors intact on a small labelled set.
    With `layer_lr_decay` < 1 the lower layers, which hold the more general features,
    move less than the top ones (layer-wise learning-rate decay).
    """
    embeddings = model.encoder.get_input_embeddings()
    if config.freeze_word_embeddings and embeddings is not None:
        embeddings.weight.requires_grad_(False)
    n_layers = int(getattr(model.encoder.config, "num_hidden_layers", 0))
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if name.startswith("heads."):
            key = (config.head_learning_rate, config.weight_decay)
        else:
            lr = config.learning_rate * config.experimental.layer_lr_decay ** _depth_below_top(name, n_layers)
            # biases and LayerNorm weights are not decayed
            key = (lr, 0.0 if param.ndim < 2 else config.weight_decay)
        groups.setdefault(key, []).append(param)
    return [{"params": params, "lr": lr, "weight_decay": wd} for (lr, wd), params in groups.items()]


_LAYER_INDEX = re.compile(r"\.layer\.(\d+)\.")


def _depth_below_top(name: str, n_layers: int) -> int:
    """How many steps of learning-rate decay an encoder parameter gets: 1 for the top
    layer, L for the bottom one, L + 1 for the embeddings, 0 for the pooler."""
    match = _LAYER_INDEX.search(name)
    if match:
        return n_layers - int(match.group(1))
    if "embeddings" in name:
        return n_layers + 1
    return 0


# Left out of a model's recorded training settings: teachers (and a soft-targets file) are
# recorded under "teacher" instead.
_NOT_RECORDED = (
    "progress",
    "teachers",
    "soft_targets",
    "soft_targets_optional",
    "distill_weight",
    "own_task_weight",
    "experimental",
    "lora",
)

TeacherTargets = Mapping[str, Mapping[str, np.ndarray]]
"""Per training set (task) and per head: the teachers' mean probabilities, one row per example.
A set's own task appears only when it is distilled too (`TrainConfig.distills_own_task`)."""


def soft_cross_entropy(
    logits: torch.Tensor, target_probs: torch.Tensor, *, temperature: float = 1.0
) -> torch.Tensor:
    """Mean cross-entropy of `logits` against a probability distribution per row.

    At a `temperature` T != 1 both sides are softened as in Hinton et al.'s distillation: the
    targets to p^(1/T) renormalised (what the teacher's logits / T give, computed from the
    stored probabilities), the logits to logits / T; the result is scaled by T^2 so the soft
    loss keeps its gradient size against the labels' cross-entropy whatever T is."""
    if temperature == 1.0:
        return -(target_probs * torch.log_softmax(logits, dim=-1)).sum(dim=-1).mean()
    softened = target_probs.float().pow(1.0 / temperature)
    softened = softened / softened.sum(dim=-1, keepdim=True)
    loss = -(softened * torch.log_softmax(logits / temperature, dim=-1)).sum(dim=-1).mean()
    return loss * temperature**2


def symmetric_kl(logits_a: torch.Tensor, logits_b: torch.Tensor) -> torch.Tensor:
    """Mean over rows of KL(p_a || p_b) + KL(p_b || p_a), halved: R-Drop's consistency term,
    which penalises a prediction that changes with the dropout mask."""
    log_a, log_b = torch.log_softmax(logits_a, dim=-1), torch.log_softmax(logits_b, dim=-1)
    forward = (log_a.exp() * (log_a - log_b)).sum(dim=-1)
    backward = (log_b.exp() * (log_b - log_a)).sum(dim=-1)
    return 0.5 * (forward + backward).mean()


def _batch_loss(
    model: MultiTaskClassifier,
    batch: Batch,
    idx: Sequence[int],
    task: str,
    soft: Mapping[str, np.ndarray],
    own_loss: nn.Module,
    config: TrainConfig,
    *,
    bf16: bool,
) -> torch.Tensor:
    """One batch's training loss: its labels' cross-entropy on the own head, the teachers' soft
    targets (own head share `config.own_weight(task)`, other heads `distill_weight`), R-Drop's
    term.
    A function of the batch alone, so FGM can compute it again on attacked embeddings."""
    heads = [task, *(h for h in soft if h != task)]
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        logits = model(batch.input_ids, batch.attention_mask, tasks=heads)
    assert batch.labels is not None
    loss: torch.Tensor = own_loss(logits[task].float(), batch.labels)
    weight = config.own_weight(task)
    temperature = config.experimental.distill_temperature
    if task in soft and weight > 0:  # the own head first, so the weight never scales the others
        targets = torch.from_numpy(soft[task][list(idx)])
        own = soft_cross_entropy(logits[task].float(), targets, temperature=temperature)
        loss = (1 - weight) * loss + weight * own
    for head, probs in soft.items():
        if head != task:
            targets = torch.from_numpy(probs[list(idx)])
            other = soft_cross_entropy(logits[head].float(), targets, temperature=temperature)
            loss = loss + config.distill_weight * other
    alpha = config.experimental.rdrop_alpha
    if alpha > 0:
        loss = loss + alpha * symmetric_kl(*logits[task].float().chunk(2))
    return loss


def fine_tune(
    train_sets: Mapping[str, LabelledData],
    dev_sets: Mapping[str, LabelledData],
    label_names: Mapping[str, list[str]],
    config: TrainConfig,
    *,
    teacher_targets: TeacherTargets | None = None,
    teacher_versions: Sequence[str] = (),
) -> TrainResult:
    """Train all heads in one run; keep the weights with the best mean dev macro-F1.

    `teacher_targets[task][head]` (see `teacher_probabilities`) adds, for a batch of
    `task`, `config.distill_weight` times the soft cross-entropy of each other `head`; for
    `head == task` the loss is (1 - w) x the labels' cross-entropy + w x the soft one, with
    w = `config.own_weight(task)`. With `config.experimental.rdrop_alpha` > 0 each batch is stacked on
    itself, so one forward pass sees every text under two dropout masks, and the own head
    adds alpha x the two halves' `symmetric_kl`.
    """
    if not train_sets:
        raise DataError("no training data: give at least one task's labelled file")
    own_weights = (
        config.own_task_weight
        if isinstance(config.own_task_weight, Mapping)
        else {"every task": config.own_task_weight}
    )
    for task, weight in own_weights.items():
        if not 0.0 <= weight <= 1.0:
            raise ModelConfigError(f"own_task_weight ({task}) must be within 0..1, not {weight}")
    if not 0.0 <= config.experimental.augment_share <= 1.0:
        share = config.experimental.augment_share
        raise ModelConfigError(f"augment_share must be within 0..1, not {share}")
    if config.experimental.fgm_epsilon < 0:
        epsilon = config.experimental.fgm_epsilon
        raise ModelConfigError(f"fgm_epsilon must be 0 (off) or positive, not {epsilon}")
    if config.experimental.distill_temperature <= 0:
        temperature = config.experimental.distill_temperature
        raise ModelConfigError(f"distill_temperature must be positive (1 = off), not {temperature}")
    if config.experimental.rdrop_alpha < 0:
        alpha = config.experimental.rdrop_alpha
        raise ModelConfigError(f"rdrop_alpha must be 0 (off) or positive, not {alpha}")
    for task in train_sets:
        if task not in label_names:
            raise DataError(f"no label set for task {task!r}")
    started = time.monotonic()
    run_seed = config.seed if config.init_seed is None else config.init_seed
    torch.manual_seed(run_seed)
    rng = np.random.default_rng(run_seed)
    model, tokenizer, base_name, parent = _build_model(config, label_names)
    pooling: Pooling = model.pooling
    if config.method not in ("full", "lora"):
        raise ModelConfigError(f"training method must be full or lora, not {config.method!r}")
    trainable = add_lora(model, config.lora) if config.method == "lora" else None
    pad_id = int(tokenizer.pad_token_id or 0)

    tokens = {t: tokenize(tokenizer, d.texts, config.max_length) for t, d in train_sets.items()}
    lengths = {t: [len(ids) for ids in tok] for t, tok in tokens.items()}
    losses = {
        t: nn.CrossEntropyLoss(
            weight=class_weights(d.labels, len(label_names[t]), config.experimental.class_weighting),
            label_smoothing=config.experimental.label_smoothing,
        )
        for t, d in train_sets.items()
    }
    steps_per_epoch = sum(math.ceil(len(d) / config.batch_size) for d in train_sets.values())
    total_steps = steps_per_epoch * config.epochs
    optimizer = torch.optim.AdamW(_param_groups(model, config))
    deadline = started + config.max_minutes * 60 if config.max_minutes else None
    warmup = int(total_steps * config.warmup_ratio)

    def time_progress() -> float:
        if deadline is None:
            return 0.0
        return (time.monotonic() - started) / (deadline - started)

    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: lr_factor(s, warmup=warmup, total=total_steps, time_progress=time_progress()),
    )
    eval_points = {
        round(steps_per_epoch * k / config.evals_per_epoch) for k in range(1, config.evals_per_epoch + 1)
    }

    # -inf, not -1: without dev sets the score is -loss, which is below -1 whenever loss > 1.
    ema_decay = config.experimental.ema_decay
    average = WeightAverage(model, ema_decay) if ema_decay > 0 else None
    # After the optimizer and the average are built: FGM needs the frozen embeddings' gradient only.
    embeddings = model.encoder.get_input_embeddings()
    fgm_epsilon = config.experimental.fgm_epsilon
    fgm = FGM(embeddings, fgm_epsilon) if fgm_epsilon > 0 and isinstance(embeddings, nn.Embedding) else None
    augment_pool = (
        SubstitutionPool(cashtag_pool(t for d in train_sets.values() for t in d.texts))
        if config.experimental.augment_share > 0
        else None
    )
    best_score, best_state, best_reports = -math.inf, None, None
    history: list[dict[str, Any]] = []
    stale = 0
    step = 0
    running = 0.0  # moving average of the training loss, continued across epochs
    stop = False
    precision = resolve_train_precision(config.precision)
    model.train()
    bar = tqdm(total=total_steps, desc=f"fine-tune ({precision})", unit="step", disable=not config.progress)
    for epoch in range(config.epochs):
        if augment_pool is not None:  # a new draw of substituted texts each epoch; labels unchanged
            share, seed = config.experimental.augment_share, run_seed * 1000 + epoch
            texts = {t: augment_texts(d.texts, share, seed, augment_pool) for t, d in train_sets.items()}
            tokens = {t: tokenize(tokenizer, x, config.max_length) for t, x in texts.items()}
            lengths = {t: [len(ids) for ids in tok] for t, tok in tokens.items()}
        batches = [(t, b) for t in train_sets for b in bucketed_batches(lengths[t], config.batch_size, rng)]
        order = rng.permutation(len(batches))
        for pos, k in enumerate(order, start=1):
            task, idx = batches[k]
            if config.experimental.rdrop_alpha > 0:
                idx = idx + idx  # dropout draws a separate mask per row
            batch = collate(tokens[task], idx, pad_id, train_sets[task].labels)
            soft = teacher_targets.get(task, {}) if teacher_targets else {}
            batch_loss = functools.partial(
                _batch_loss, model, batch, idx, task, soft, losses[task], config, bf16=precision == "bf16"
            )
            loss = batch_loss()
            loss.backward()
            if fgm is not None:
                fgm.adversarial_step(batch_loss)
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            if average is not None:
                average.update()
            step += 1
            running = 0.98 * running + 0.02 * loss.item() if step > 1 else loss.item()
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{running:.3f}")
            out_of_time = deadline is not None and time.monotonic() > deadline
            if pos in eval_points or out_of_time:
                with average.applied() if average is not None else contextlib.nullcontext():
                    reports = evaluate_sets(model, tokenizer, dev_sets, max_length=config.max_length)
                    score = mean_macro_f1(reports) if reports else -loss.item()
                    if score > best_score:  # the weights evaluated are the ones kept
                        best_state = copy.deepcopy(model.state_dict())
                entry = {
                    "step": step,
                    "epoch": round(epoch + pos / len(order), 3),
                    "loss": running,
                    "dev_mean_macro_f1": score,
                    **{f"dev_{t}_{m}": r[m] for t, r in reports.items() for m in ("accuracy", "macro_f1")},
                    "elapsed_s": round(time.monotonic() - started, 1),
                }
                history.append(entry)
                log.info("eval %s", entry)
                bar.write(
                    f"step {step} epoch {entry['epoch']}: loss {running:.3f}, dev "
                    + ", ".join(
                        f"{t} acc {r['accuracy']:.4f} F1 {r['macro_f1']:.4f}" for t, r in reports.items()
                    )
                )
                if score > best_score:
                    best_score, best_reports, stale = score, reports, 0
                else:
                    stale += 1
                    if stale >= config.patience:
                        bar.write(f"early stop: no dev improvement in {stale} evaluations")
                        stop = True
                if out_of_time:
                    bar.write(f"time budget of {config.max_minutes} min reached")
                    stop = True
            if stop:
                break
        if stop:
            break
    bar.close()
    if fgm is not None:
        fgm.release()
    if best_state is not None:
        model.load_state_dict(best_state)
    adapter = None
    if trainable is not None:  # serve a plain model: fold the adapters into the weights
        adapter = adapter_state(model)
        merge_lora(model)
    model.eval()
    memories = build_memories(train_sets, label_names, config.memory)
    if memories and best_reports is not None:
        # the dev figures of the model as served: the heads mixed with their memories (model
        # selection above compared the heads alone, which the memories do not change)
        best_reports = evaluate_sets(
            model, tokenizer, dev_sets, max_length=config.max_length, memories=memories
        )
    training_info = {
        **{k: v for k, v in asdict(config).items() if k not in _NOT_RECORDED},
        # Recorded flat, as before they were grouped: a model's record reads the same either way.
        **asdict(config.experimental),
        "train_rows": {t: len(d) for t, d in train_sets.items()},
        "dev_rows": {t: len(d) for t, d in dev_sets.items()},
        "precision": precision,
        "steps": step,
        **({"lora": asdict(config.lora), "trainable_parameters": trainable} if trainable is not None else {}),
        "seconds": round(time.monotonic() - started, 1),
    }
    training_info["teacher"] = (
        {
            "versions": list(teacher_versions),
            "distill_weight": config.distill_weight,
            "own_task_weight": config.own_task_weight,  # a plain dict or float (TrainConfig)
        }
        if teacher_targets
        else None
    )
    model_config = ModelConfig(
        labels={t: list(n) for t, n in label_names.items()},
        base_model=base_name,
        max_length=config.max_length,
        pooling=pooling,
        dropout=config.dropout,
        training=training_info,
    )
    return TrainResult(
        model=model,
        tokenizer=tokenizer,
        model_config=model_config,
        dev_reports=best_reports or {},
        history=history,
        parent_version=parent,
        seconds=time.monotonic() - started,
        adapter=adapter,
        memories=memories,
    )


def build_memories(
    train_sets: Mapping[str, LabelledData], label_names: Mapping[str, list[str]], options: MemoryOptions
) -> dict[str, LexicalMemory]:
    """A lexical memory of the training texts for each task `options.tasks` names and the run
    trains (bert_core.memory); seconds for the seed data."""
    return {
        task: LexicalMemory.build(data.texts, data.labels, len(label_names[task]), options)
        for task, data in train_sets.items()
        if task in options.tasks and len(data)
    }


def teacher_probabilities(
    teachers: Sequence[tuple[MultiTaskClassifier, PreTrainedTokenizerBase, int]],
    train_sets: Mapping[str, LabelledData],
    *,
    own_task: bool = False,
    bf16: bool = False,
) -> dict[str, dict[str, np.ndarray]]:
    """The teachers' mean probabilities (model, tokenizer, max length each) for every head
    other than each set's own task, and for the own task too when `own_task`. `bf16` where the
    run trains in bf16 anyway: 3 teachers over 26k texts take minutes in fp32."""
    targets: dict[str, dict[str, np.ndarray]] = {}
    for task, data in train_sets.items():
        per_head: dict[str, list[np.ndarray]] = {}
        for model, tokenizer, max_length in teachers:
            heads = [h for h in model.heads if h != task or own_task]
            if heads:
                tokens = tokenize(tokenizer, data.texts, max_length)
                pad_id = int(tokenizer.pad_token_id or 0)
                probs = predict_proba(model, tokens, pad_id, tasks=heads, bf16=bf16)
                for head, p in probs.items():
                    per_head.setdefault(head, []).append(p)
        if per_head:
            targets[task] = {head: np.mean(ps, axis=0) for head, ps in per_head.items()}
    return targets
