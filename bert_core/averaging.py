"""An exponential moving average of the trainable weights (Polyak averaging).

Why: on a small labelled set the fine-tuned weights wander between evaluations; the average
of the last few hundred steps is a smoother point that often generalises better than the
last step, at no inference cost (it is the same architecture). Evaluation, model selection
and the saved checkpoint then use the averaged weights; training continues on the raw ones.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


class WeightAverage:
    """EMA of `model`'s trainable parameters with the usual warm-up of the decay
    (min(decay, (1 + t) / (10 + t))), so the first evaluations are not dominated by the
    initial weights."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), not {decay}")
        self.decay = decay
        self.updates = 0
        self._params = {n: p for n, p in model.named_parameters() if p.requires_grad}
        self.shadow = {n: p.detach().clone() for n, p in self._params.items()}

    @torch.no_grad()
    def update(self) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for name, param in self._params.items():
            self.shadow[name].lerp_(param.detach(), 1.0 - decay)

    @contextlib.contextmanager
    @torch.no_grad()
    def applied(self) -> Iterator[None]:
        """The averaged weights in the model for the duration of the block, then the raw ones back."""
        raw = {n: p.detach().clone() for n, p in self._params.items()}
        for name, param in self._params.items():
            param.copy_(self.shadow[name])
        try:
            yield
        finally:
            for name, param in self._params.items():
                param.copy_(raw[name])
