"""Hyper-parameter dataclasses: the one place their defaults are defined.

Kept free of torch imports so the CLI can show defaults without loading the model stack.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

Pooling = Literal["cls", "mean"]
ClassWeighting = Literal["none", "sqrt_inverse", "inverse"]
TrainPrecision = Literal["fp32", "bf16", "auto"]
TrainMethod = Literal["full", "lora"]
# Every Linear inside the encoder layers of a BERT-family model (peft matches by name suffix):
# attention query/key/value and output, feed-forward in and out; not the unused pooler.
LORA_BERT_TARGETS = ("query", "key", "value", "output.dense", "intermediate.dense")
# The measured default (docs/performance.md#model-quality): where there are soft targets, the
# sentiment head takes half its loss from the teacher, which beats the student most there;
# topic texts keep their labels alone (the student is as good as its teacher on topic).
DEFAULT_OWN_TASK_WEIGHT: Mapping[str, float] = MappingProxyType({"sentiment": 0.5})


@dataclass
class ExperimentalOptions:
    """Training options that were measured and did not pay on their own: each stayed within
    the seed spread of the default recipe (docs/performance.md#training-recipe). Kept, off by
    default, for other encoders and data; R-Drop reached the topic target only with three
    seeds ensembled; `distill_temperature` 2 did not lift topic; on the distilled recipe
    `augment_share` 0.3 changed nothing and `fgm_epsilon` 1.0 traded sentiment macro-F1 for
    topic macro-F1 at twice the step cost."""

    class_weighting: ClassWeighting = "none"
    # 1.0 = off; else layer k of L (0 = bottom) trains at lr x decay^(L - k), embeddings at decay^(L + 1)
    layer_lr_decay: float = 1.0
    label_smoothing: float = 0.0  # share of each hard label's target mass spread over all classes
    # 0 = off; else every batch runs twice (two dropout masks) and the own head's two
    # distributions are pulled together by this weight x their symmetric KL (R-Drop)
    rdrop_alpha: float = 0.0
    ema_decay: float = 0.0  # 0 = off; else evaluate and keep an EMA of the weights (bert_core.averaging)
    # 0 = off; else each epoch this share of the training texts has its cashtags, company names
    # and figures substituted (bert_core.augment), drawn anew per epoch; dev texts never
    augment_share: float = 0.0
    # 0 = off; else FGM: each step also trains on the batch with the word-embedding matrix moved
    # by this epsilon along its normalised gradient (bert_core.adversarial; one more pass a step)
    fgm_epsilon: float = 0.0
    # 1 = off; else the soft targets are softened to p^(1/T) (renormalised: the teacher's
    # logits / T), the student's logits are divided by T and the soft losses scaled by T^2
    # (Hinton et al.): a teacher that memorised its training texts gives near one-hot targets,
    # and softening them shows the student which wrong classes the teacher found close
    distill_temperature: float = 1.0


@dataclass
class LoraOptions:
    """Low-rank adapters (bert_core.lora) for `TrainConfig.method = "lora"`: each targeted Linear
    W learns W + (alpha / rank) x B A with A (rank x in) and B (out x rank); B starts at 0, so
    training starts exactly from the loaded model."""

    rank: int = 8
    alpha: int = 16
    dropout: float = 0.1
    target_modules: tuple[str, ...] = LORA_BERT_TARGETS


@dataclass
class MemoryOptions:
    """The lexical memory beside a task head (bert_core.memory): measured on the dev split of
    the seed data (docs/performance.md#model-quality). `tasks` () turns it off."""

    tasks: tuple[str, ...] = ("topic",)
    temperature: float = 0.04  # of the vote weights exp((similarity - best) / temperature)
    head_weight: float = 0.6  # the head's share of the mixed probabilities
    min_df: int = 2  # a term in fewer training texts is left out (typos, one-off names)
    max_df: float = 0.05  # a term in a larger share of them too ("the", "$"): no topic


@dataclass
class TrainConfig:
    """Fine-tuning hyper-parameters; defaults are the measured ones for MiniLM-L6."""

    base_model: str | None = None
    init_from: str | None = None
    pooling: Pooling = "mean"
    max_length: int = 64
    batch_size: int = 32
    learning_rate: float = 1e-4
    head_learning_rate: float = 1e-3
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    epochs: int = 4
    max_minutes: float | None = None
    grad_clip: float = 1.0
    dropout: float = 0.1
    freeze_word_embeddings: bool = True
    patience: int = 2
    evals_per_epoch: int = 2
    seed: int = 42  # the dev split's seed, and the run's unless init_seed is given
    init_seed: int | None = None  # head init, dropout and batch order only: same dev split, another run
    progress: bool = True
    # Model directories trained on this run's training rows; their mean probabilities are
    # the soft targets (bert_core.training: cross-task and own-task distillation).
    teachers: tuple[str, ...] = ()
    # A soft-targets file (bert_core.soft_targets, `finsent teacher-targets`): the teacher's
    # probabilities computed once, instead of `teachers`. It must match the run's data files,
    # split and labels; with `soft_targets_optional` (the file shipped beside the seed data) a
    # missing or non-matching file is logged and the run trains without distillation instead.
    soft_targets: str | None = None
    soft_targets_optional: bool = False
    distill_weight: float = 1.0  # weight of the other heads' soft targets
    # Share of the own head's loss taken by the soft targets (0..1), where there are soft
    # targets (teachers or a file; without them it has nothing to act on): one share for every
    # task, or per task ({"sentiment": 0.5}: tasks not named take 0). Per task because a teacher
    # can be stronger than the student on one task and not on the other.
    own_task_weight: float | Mapping[str, float] = field(
        default_factory=lambda: dict(DEFAULT_OWN_TASK_WEIGHT)
    )
    # auto: bf16 autocast where the CPU has bf16 units (2.3x faster steps), else fp32
    precision: TrainPrecision = "auto"
    # full: every encoder weight trains (but frozen word embeddings); lora: the encoder is frozen
    # and low-rank adapters train (`lora`), merged into the weights at the end (bert_core.lora)
    method: TrainMethod = "full"
    lora: LoraOptions = field(default_factory=LoraOptions)
    memory: MemoryOptions = field(default_factory=MemoryOptions)
    experimental: ExperimentalOptions = field(default_factory=ExperimentalOptions)

    def __post_init__(self) -> None:
        # A plain dict whatever Mapping was given (DEFAULT_OWN_TASK_WEIGHT is read-only): the
        # config is deep-copied into a model's record, and a mappingproxy cannot be copied.
        if isinstance(self.own_task_weight, Mapping):
            self.own_task_weight = dict(self.own_task_weight)

    def own_weight(self, task: str) -> float:
        """The share of `task`'s own-head loss taken by the soft targets."""
        weight = self.own_task_weight
        return float(weight.get(task, 0.0)) if isinstance(weight, Mapping) else float(weight)

    @property
    def distills_own_task(self) -> bool:
        """Whether any task's own head learns from the soft targets (so they must cover it)."""
        weight = self.own_task_weight
        return any(w > 0 for w in weight.values()) if isinstance(weight, Mapping) else weight > 0


@dataclass
class MlmConfig:
    """MLM pre-training hyper-parameters (BERT's 15% masking rate)."""

    base_model: str | None = None
    max_length: int = 64
    batch_size: int = 32
    learning_rate: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    epochs: int = 1
    max_minutes: float | None = None
    mlm_probability: float = 0.15
    seed: int = 42
    progress: bool = True


def format_own_task_weight(weight: float | Mapping[str, float]) -> str:
    """The command-line form `parse_own_task_weight` reads: `0.5` or `sentiment=0.5`."""
    if isinstance(weight, Mapping):
        return ",".join(f"{task}={share:g}" for task, share in weight.items()) or "0"
    return f"{weight:g}"


def parse_own_task_weight(text: str, tasks: tuple[str, ...]) -> float | dict[str, float]:
    """`0.5` (every task) or `sentiment=0.5[,topic=0.2]` (tasks not named take 0), as typed on
    the command line; ValueError with the reason and the accepted forms otherwise."""
    forms = f"give one share in 0..1 (0.5) or shares per task ({tasks[-1]}=0.5,{tasks[0]}=0)"

    def share(value: str, what: str) -> float:
        try:
            weight = float(value)
        except ValueError:
            raise ValueError(f"{what} {value!r} is not a number: {forms}") from None
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"{what} {value!r} is outside 0..1: {forms}")
        return weight

    text = text.strip()
    if "=" not in text:
        return share(text, "own-task weight")
    weights: dict[str, float] = {}
    for part in text.split(","):
        task, _, value = part.partition("=")
        task = task.strip()
        if task not in tasks:
            known = ", ".join(tasks)
            raise ValueError(f"unknown task {task!r} in own-task weight {text!r}: tasks are {known}")
        if task in weights:
            raise ValueError(f"task {task!r} is given twice in own-task weight {text!r}")
        weights[task] = share(value.strip(), f"{task}'s own-task weight")
    return weights
