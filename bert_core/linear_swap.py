"""Swapping a module tree's `nn.Linear` layers for inference-only variants, in place."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn


def replace_linears(model: nn.Module, make: Callable[[nn.Linear], nn.Module]) -> int:
    """Replace every plain `nn.Linear` under `model` by `make(layer)`; returns how many.
    Subclasses and already swapped layers are left alone."""
    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Linear:
                setattr(parent, name, make(child))
                replaced += 1
    return replaced
