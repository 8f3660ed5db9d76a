"""The exponential moving average of weights used by fine-tuning (`--ema-decay`)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bert_core.averaging import WeightAverage


def _layer() -> nn.Linear:
    layer = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        layer.weight.fill_(0.0)
    return layer


def test_average_follows_the_warmed_up_decay() -> None:
    layer = _layer()
    average = WeightAverage(layer, decay=0.9)
    expected = torch.zeros(1, 2)
    for step in range(1, 40):
        with torch.no_grad():
            layer.weight.fill_(float(step))
        average.update()
        decay = min(0.9, (1 + step) / (10 + step))
        expected = decay * expected + (1 - decay) * float(step)
    torch.testing.assert_close(average.shadow["weight"], expected)
    assert average.shadow["weight"][0, 0] < 39.0  # lags the raw weights


def test_applied_swaps_the_average_in_and_restores_the_raw_weights() -> None:
    layer = _layer()
    average = WeightAverage(layer, decay=0.5)
    with torch.no_grad():
        layer.weight.fill_(4.0)
    average.update()
    shadow = average.shadow["weight"].clone()
    assert not torch.equal(shadow, layer.weight.detach())
    with average.applied():
        torch.testing.assert_close(layer.weight.detach(), shadow)
    torch.testing.assert_close(layer.weight.detach(), torch.full((1, 2), 4.0))


def test_frozen_parameters_are_not_averaged() -> None:
    layer = _layer()
    layer.weight.requires_grad_(False)
    assert WeightAverage(layer, decay=0.9).shadow == {}


@pytest.mark.parametrize("decay", [0.0, 1.0, -0.1])
def test_decay_outside_the_open_unit_interval_is_refused(decay: float) -> None:
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(_layer(), decay=decay)
