"""int8 Linear layers with one activation scale per row, for the Predictor's int8 copy.

Why not torch's dynamic quantisation (`quantize_dynamic`, the int8 path until session 14):
it quantises each call's whole input matrix with one scale. In an unpadded pass that matrix
holds every token of up to 2,048 (`TOKENS_PER_PASS`), so one loud token coarsens the
quantisation of all the others, and a headline's score depended on which headlines shared
its pass. Measured on session 14's default model (AMD EPYC Zen 5), the same 2,653 dev
headlines scored in one call and in calls of 16: 2.4 % of the sentiment labels and 2.3 % of
the topics differed, sentiment scores by up to 0.89; bf16 and fp32 gave identical results
both ways. Dev accuracy moved with the batching too (0.8574-0.8616 against fp32's 0.8648).

Here each row (token) of the input gets its own symmetric scale and each output channel of
the weight its own: the int8 product is exact integer arithmetic (`torch._int_mm`), and the
result of a row depends on that row alone, so a headline scores the same whatever else is in
the call. Rows of 384 values quantise finely enough that the feed-forward output projection
(whose GELU inputs defeated a per-matrix scale) is quantised as well. Same model, same dev
split: sentiment / topic accuracy 0.8669 / 0.8964 against fp32's 0.8648 / 0.8970, and 920
headlines/s against the per-matrix path's 687/s (README, session 14).

Inference copies only: the weights are plain int8 tensors held as buffers of a module that
cannot be trained.
"""

from __future__ import annotations

import torch
from torch import nn

_LEVELS = 127.0  # symmetric int8: -127..127, so a scale maps the row's largest |value| to 127
_TINY = 1e-12  # the scale of an all-zero row: any positive value quantises it to zeros


class Int8Linear(nn.Module):
    """`y = x Wᵀ + b` with W in int8 (a scale per output channel) and x quantised to int8 per
    row on every call; accumulation in int32, output fp32."""

    weight_int8: torch.Tensor  # (out, in)
    weight_scale: torch.Tensor  # (out,)
    bias: torch.Tensor  # (out,)

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        weight = linear.weight.detach().float()
        scale = (weight.abs().amax(dim=1) / _LEVELS).clamp_min(_TINY)
        self.register_buffer("weight_int8", torch.round(weight / scale[:, None]).to(torch.int8))
        self.register_buffer("weight_scale", scale)
        bias = linear.bias.detach().float() if linear.bias is not None else torch.zeros(self.out_features)
        self.register_buffer("bias", bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features).float()
        if rows.shape[0] == 0:
            return x.new_zeros((*x.shape[:-1], self.out_features), dtype=torch.float32)
        row_scale = rows.abs().amax(dim=1, keepdim=True).clamp_min_(_TINY).div_(_LEVELS)
        quantised = rows.div(row_scale).round_().to(torch.int8)
        product = torch._int_mm(quantised, self.weight_int8.t())
        # One new float matrix, then in place: fresh (tokens, out) matrices cost page faults,
        # and a broadcast `addcmul` with the bias first took four times the product here.
        out = torch.mul(product, self.weight_scale).mul_(row_scale).add_(self.bias)
        return out.view(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 per row and channel"


def quantize_linears(model: nn.Module, *, keep: set[nn.Module] | None = None) -> int:
    """Replace every `nn.Linear` of `model` not in `keep` by an `Int8Linear`, in place;
    returns how many were replaced."""
    kept = keep or set()
    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Linear and child not in kept:
                setattr(parent, name, Int8Linear(child))
                replaced += 1
    return replaced
