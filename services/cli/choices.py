"""The fixed sets of values CLI options take, as enums.

Typer lists an enum's values in `--help`, rejects anything else with one line naming the
choices, and offers them to shell completion; a free string did none of that. Each enum
mirrors the set its library defines, and tests/unit/test_cli_choices.py checks that they
stay equal, so a new value there cannot be forgotten here.
"""

from __future__ import annotations

from enum import StrEnum


class Severity(StrEnum):
    warning = "warning"
    high = "high"
    critical = "critical"


class Scope(StrEnum):
    market = "market"
    topic = "topic"
    ticker = "ticker"


class Channel(StrEnum):
    webhook = "webhook"
    slack = "slack"
    email = "email"
    log = "log"


class Precision(StrEnum):
    """Serving precision (FINSENT_PRECISION)."""

    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"
    int8 = "int8"


class TrainPrecision(StrEnum):
    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"


class TrainMethod(StrEnum):
    """How a retraining trains (FINSENT_RETRAIN_METHOD)."""

    full = "full"
    lora = "lora"


class Pooling(StrEnum):
    cls = "cls"
    mean = "mean"


class ClassWeighting(StrEnum):
    none = "none"
    sqrt_inverse = "sqrt_inverse"
    inverse = "inverse"


class EvalSplit(StrEnum):
    all = "all"
    dev = "dev"


class Task(StrEnum):
    topic = "topic"
    sentiment = "sentiment"


class ModelStatus(StrEnum):
    candidate = "candidate"
    champion = "champion"
    retired = "retired"
    rejected = "rejected"


class Role(StrEnum):
    viewer = "viewer"
    analyst = "analyst"
    admin = "admin"


class AlertFilter(StrEnum):
    """`finsent alerts list --status`: the alerter's status or the analyst's view of it."""

    open = "open"
    attention = "attention"
    acknowledged = "acknowledged"
    closed = "closed"
    resolved = "resolved"
    superseded = "superseded"
    all = "all"
