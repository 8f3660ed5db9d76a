"""The CLI's choice enums hold exactly the values their libraries define, so a new severity,
channel, precision or role cannot be forgotten on the command line."""

from __future__ import annotations

from enum import StrEnum
from typing import get_args

import pytest

from bert_core import config as train_config
from bert_core import inference
from dashboards.access import ROLES
from services.alerting import SCOPES, SEVERITIES
from services.alerting.analyst import ALERT_FILTERS
from services.cli import choices
from services.delivery import CHANNELS
from services.learning.holdout import HOLDOUT_TASKS
from services.learning.registry import STATUSES
from services.settings import FlatSettings


@pytest.mark.parametrize(
    ("enum", "values"),
    [
        (choices.Severity, SEVERITIES),
        (choices.Scope, SCOPES),
        (choices.Channel, CHANNELS),
        (choices.Precision, get_args(inference.Precision)),
        (choices.Precision, get_args(FlatSettings.model_fields["precision"].annotation)),
        (choices.TrainPrecision, get_args(train_config.TrainPrecision)),
        (choices.Pooling, get_args(train_config.Pooling)),
        (choices.TrainMethod, get_args(train_config.TrainMethod)),
        (choices.ClassWeighting, get_args(train_config.ClassWeighting)),
        (choices.Task, HOLDOUT_TASKS),
        (choices.ModelStatus, STATUSES),
        (choices.Role, ROLES),
        (choices.AlertFilter, ALERT_FILTERS),
    ],
)
def test_enum_matches_its_library(enum: type[StrEnum], values: tuple[str, ...]) -> None:
    assert {member.value for member in enum} == set(values)
