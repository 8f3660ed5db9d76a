"""FGM adversarial training: a second loss on word embeddings pushed the worst way.

Fast Gradient Method (Miyato et al., 2017, as used for BERT fine-tuning): after the ordinary
backward pass, the word-embedding matrix is moved by epsilon x its gradient / the gradient's
norm, which is the small change that raises the loss most, the batch's loss is computed and
back-propagated again on the moved embeddings, and the matrix is put back exactly. The
trainable weights so learn from both passes, which makes the classifier less sensitive to
small changes of a token's meaning (a synonym, a misspelt ticker).

Where the word embeddings are frozen (`TrainConfig.freeze_word_embeddings`, the default) they
only need a gradient for the direction of the attack, which `FGM` asks for and clears; where
they train, their gradient is kept and the attacked pass adds to it, as for every weight.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn


class FGM:
    """Attacks one embedding matrix; `adversarial_step` is the whole extra pass."""

    def __init__(self, embedding: nn.Embedding, epsilon: float) -> None:
        if not epsilon > 0:
            raise ValueError(f"FGM epsilon must be positive, not {epsilon}")
        self.weight = embedding.weight
        self.epsilon = epsilon
        self.trainable = embedding.weight.requires_grad
        # A frozen matrix stays out of the optimizer (built before), but the backward pass must reach it.
        self.weight.requires_grad_(True)

    def release(self) -> None:
        """Back to the matrix's own requires_grad (at the end of training)."""
        self.weight.requires_grad_(self.trainable)
        if not self.trainable:
            self.weight.grad = None

    def adversarial_step(self, loss_fn: Callable[[], torch.Tensor]) -> float | None:
        """After the ordinary `loss.backward()`: move the embeddings along their gradient,
        back-propagate `loss_fn()` there (adding to the trainable weights' gradients), restore
        the embeddings; a frozen matrix's gradient is cleared. Returns the adversarial loss, or None where the
        gradient was zero or not finite (nothing to attack along; no extra pass)."""
        grad = self.weight.grad
        if grad is None:
            return None
        norm = float(grad.norm())
        if not self.trainable:
            self.weight.grad = None
        if norm == 0.0 or not math.isfinite(norm):
            return None
        rows = grad.abs().sum(dim=1).nonzero().squeeze(1)  # only the batch's tokens have a gradient
        backup = self.weight.data[rows].clone()
        self.weight.data[rows] += self.epsilon * grad[rows] / norm
        try:
            loss = loss_fn()
            loss.backward()
        finally:
            self.weight.data[rows] = backup
            if not self.trainable:
                self.weight.grad = None
        return float(loss.detach())
