"""bf16 Linear layers whose weights are laid out once for oneDNN, for the Predictor's copy.

Why: `F.linear` on a bf16 weight hands oneDNN a plain row-major matrix, which it reorders
into its blocked (AMX / AVX512-BF16) layout on every call. For a live stream's small passes
that reorder is most of the product: on an AMX Xeon, one thread, a 384→1536 layer took
85 µs with `F.linear` and 38 µs prepacked at 16 rows, 270 vs 197 µs at 256 rows, with
bit-identical outputs (a microbenchmark with the weight in cache; in the whole forward pass,
where weights stream from memory, the gain is smaller; docs/performance.md#unpadded-passes).
Reordering once at load time, and running BERT's feed-forward GELU inside the same oneDNN call,
removes that per-call work and a separate pass over the widest activation.

Inference copies only: the reordered weight is an opaque oneDNN tensor that cannot be
trained, saved or deep-copied, so it is held as a plain attribute (not a parameter or
buffer) and nothing that walks the module's state sees it.
"""

from __future__ import annotations

import torch
from torch import nn

from bert_core.cpu import onednn_has_ops
from bert_core.linear_swap import replace_linears


def available() -> bool:
    """True where torch has oneDNN with native bf16 matrix units and the prepacked ops."""
    if not onednn_has_ops("mkldnn", "_reorder_linear_weight", "_linear_pointwise"):
        return False
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


class PrepackedLinear(nn.Module):
    """`y = x Wᵀ + b` (optionally `gelu(...)`, the exact erf form) in bf16, W prepacked."""

    def __init__(self, linear: nn.Linear, *, gelu: bool = False) -> None:
        super().__init__()
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        weight = linear.weight.detach().to(torch.bfloat16).contiguous()
        self._packed = torch.ops.mkldnn._reorder_linear_weight(weight)
        self._bias = None if linear.bias is None else linear.bias.detach().to(torch.bfloat16).contiguous()
        self._attr, self._algorithm = ("gelu", "none") if gelu else ("none", "")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Under autocast LayerNorm hands over fp32; the prepacked op is not on autocast's list.
        return torch.ops.mkldnn._linear_pointwise(
            x.to(torch.bfloat16), self._packed, self._bias, self._attr, [], self._algorithm
        )

    def extra_repr(self) -> str:
        fused = ", gelu" if self._attr == "gelu" else ""
        return f"in_features={self.in_features}, out_features={self.out_features}, bf16 prepacked{fused}"


def prepack_linears(model: nn.Module) -> int:
    """Replace every `nn.Linear` in `model` by a `PrepackedLinear`, in place, and fuse the
    exact GELU of BERT feed-forward blocks (`intermediate.dense` + `intermediate_act_fn`)
    into its layer. Returns how many layers were replaced."""
    fused = _fuse_feed_forward_gelu(model)  # first, while those layers are still nn.Linear
    return fused + replace_linears(model, PrepackedLinear)


def _fuse_feed_forward_gelu(model: nn.Module) -> int:
    """Fuse GELU into each BERT `intermediate` block whose activation is exact (erf) GELU;
    returns how many it fused."""
    fused = 0
    for module in list(model.modules()):
        dense = getattr(module, "dense", None)
        act = getattr(module, "intermediate_act_fn", None)
        if type(dense) is nn.Linear and _is_exact_gelu(act):
            module.dense = PrepackedLinear(dense, gelu=True)
            module.intermediate_act_fn = nn.Identity()
            fused += 1
    return fused


def _is_exact_gelu(act: object) -> bool:
    # transformers' GELUActivation wraps F.gelu (erf); its tanh and "new" variants differ.
    if type(act).__name__ == "GELUActivation":
        return getattr(act, "act", None) is nn.functional.gelu
    return isinstance(act, nn.GELU) and act.approximate == "none"
