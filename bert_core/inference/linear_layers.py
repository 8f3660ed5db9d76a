"""Inference-only replacements for the `nn.Linear` layers of the Predictor's model copy.

- `replace_linears`: swap a module tree's plain `nn.Linear` layers, in place;
- `Int8Linear` / `quantize_linears`: the int8 path, a scale per input row and per weight
  channel (`int8_available` says whether this torch build can run it);
- `PrepackedLinear` / `prepack_linears`: the bf16 path, weights laid out once for oneDNN and
  BERT's feed-forward GELU fused into its layer (`prepacked_available`).

int8 layers: why not torch's dynamic quantisation (`quantize_dynamic`, the earlier int8 path):
it quantises each call's whole input matrix with one scale. In an unpadded pass that matrix
holds every token of up to 2,048 (`TOKENS_PER_PASS`), so one loud token coarsens the
quantisation of all the others, and a headline's score depended on which headlines shared
its pass. Measured on the default model (AMD EPYC Zen 5), the same 2,653 dev
headlines scored in one call and in calls of 16: 2.4 % of the sentiment labels and 2.3 % of
the topics differed, sentiment scores by up to 0.89; bf16 and fp32 gave identical results
both ways. Dev accuracy moved with the batching too (0.8574-0.8616 against fp32's 0.8648).

Here each row (token) of the input gets its own symmetric scale and each output channel of
the weight its own; oneDNN's quantised matrix product (weights laid out once at load) sums
in exact int32, and the row's scale is applied afterwards, so a row's result depends on that
row alone: a headline scores the same whatever else is in the call. Rows quantise finely
enough that the feed-forward output projection (whose GELU inputs defeated a per-matrix
scale) is int8 as well. Same model, same dev split: sentiment / topic accuracy 0.8669 /
0.8964 against fp32's 0.8648 / 0.8970, and 1,025 headlines/s against the per-matrix path's
687/s (Zen 5); with the cheaper conversion to uint8 below, 731/s against bf16's 607/s on a
Zen 4 (docs/performance.md#precision).

Activations go in as uint8 with a zero point. CPUs without VNNI multiply uint8 by int8 in
pairs summed into 16 bits, which overflows for full-range values (oneDNN held to AVX2 here
gave wrong sums), so there activations get 7 bits (±63) and the sums stay exact — as fbgemm
did for the old path (`reduce_range`). Which applies is found by trying the worst case once
(`activation_levels`), not read from the CPU flags: oneDNN may be held to an older
instruction set (`ONEDNN_MAX_CPU_ISA`), and AVX-VNNI without AVX512-VNNI sums exactly too.

Prepacked bf16 layers: `F.linear` on a bf16 weight hands oneDNN a plain row-major matrix, which it reorders
into its blocked (AMX / AVX512-BF16) layout on every call. For a live stream's small passes
that reorder is most of the product: on an AMX Xeon, one thread, a 384→1536 layer took
85 µs with `F.linear` and 38 µs prepacked at 16 rows, 270 vs 197 µs at 256 rows, with
bit-identical outputs (a microbenchmark with the weight in cache; in the whole forward pass,
where weights stream from memory, the gain is smaller; docs/performance.md#unpadded-passes).
Reordering once at load time, and running BERT's feed-forward GELU inside the same oneDNN call,
removes that per-call work and a separate pass over the widest activation.

Inference copies only: both kinds hold their laid-out weight as an opaque oneDNN tensor that
cannot be trained, saved or deep-copied, so it is a plain attribute (not a parameter or
buffer) and nothing that walks the module's state sees it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import nn

from bert_core.inference.cpu import onednn_has_ops


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


# int8 layers

_WEIGHT_LEVELS = 127.0  # symmetric int8 weights: -127..127
_TINY = 1e-12  # the scale of an all-zero row or channel: any positive value quantises it to zeros


def _row_absmax(rows: torch.Tensor) -> torch.Tensor:
    """max |x| per row, as a column; two reductions instead of a full-size `abs()` copy."""
    return torch.maximum(rows.amax(dim=1, keepdim=True), rows.amin(dim=1, keepdim=True).neg_())


def _to_uint8(whole: torch.Tensor, zero_point: int) -> torch.Tensor:
    """Whole numbers v with |v| < `zero_point` <= 128, as uint8 v + `zero_point`.

    Through int8, then the zero point added in uint8 (which wraps: a negative v's byte is
    256 + v), rather than `+ zero_point` then `.to(uint8)`: torch converts float to uint8 in
    a scalar loop, 3-4x slower than to int8 (2,048 x 1,536 values on a Zen 4: 0.82 against
    0.2 ms), and that conversion was much of the int8 layer's time outside the product."""
    return whole.to(torch.int8).view(torch.uint8).add_(zero_point)


def int8_available() -> bool:
    """True where torch has oneDNN's quantised linear ops (x86 builds with oneDNN)."""
    return onednn_has_ops("onednn", "qlinear_prepack", "qlinear_pointwise")


@functools.cache
def activation_levels() -> int:
    """127 where oneDNN sums uint8 x int8 products exactly at full range here (VNNI, AMX),
    else 63, so that a pair of products cannot overflow 16 bits."""
    return 127 if _sums_exactly(127) else 63


def _sums_exactly(levels: int) -> bool:
    """Whether the largest products, all of one sign, come back exact at `levels`."""
    inner = 64
    weight = torch.full((16, inner), int(_WEIGHT_LEVELS), dtype=torch.int8)
    weight[1::2] = -int(_WEIGHT_LEVELS)
    shifted = torch.full((2, inner), 2 * levels + 1, dtype=torch.uint8)  # +levels
    shifted[1] = 1  # -levels
    expected = (shifted.int() - (levels + 1)) @ weight.int().t()
    out = _int8_product(
        shifted, levels + 1, torch.ops.onednn.qlinear_prepack(weight, None), torch.ones(16),
        torch.zeros(16, dtype=torch.long),
    )  # fmt: skip
    return torch.equal(out, expected.float())


def _int8_product(
    shifted: torch.Tensor,
    zero_point: int,
    packed: torch.Tensor,
    weight_scale: torch.Tensor,
    weight_zero_points: torch.Tensor,
) -> torch.Tensor:
    """oneDNN's quantised product of uint8 rows (input scale 1) and a laid-out int8 weight,
    as fp32: the exact integer sums times the weight's channel scales; no bias, no post-op."""
    return torch.ops.onednn.qlinear_pointwise(
        shifted, 1.0, zero_point, packed, weight_scale, weight_zero_points,
        None, 1.0, 0, torch.float32, "none", [], "",
    )  # fmt: skip


class Int8Linear(nn.Module):
    """`y = x Wᵀ + b` with W in int8 (a scale per output channel) and x quantised per row
    on every call (`levels` steps either side of zero); exact int32 sums, output fp32."""

    def __init__(self, linear: nn.Linear, *, levels: int | None = None) -> None:
        super().__init__()
        if levels is not None and not 1 <= levels <= 127:
            raise ValueError(f"levels must be within 1..127 (int8), not {levels}")
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        self.levels = levels if levels is not None else activation_levels()
        weight = linear.weight.detach().float()
        scale = (weight.abs().amax(dim=1) / _WEIGHT_LEVELS).clamp_min(_TINY)
        weight_int8 = torch.round(weight / scale[:, None]).to(torch.int8)
        self._packed = torch.ops.onednn.qlinear_prepack(weight_int8, None)
        self.weight_scale = scale
        self._zero_points = torch.zeros(self.out_features, dtype=torch.long)
        self.bias = (
            linear.bias.detach().float().clone()
            if linear.bias is not None
            else torch.zeros(self.out_features)
        )

    @torch.no_grad()  # the int8 product has no gradient; do not pretend otherwise
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features).float()
        if rows.shape[0] == 0:
            return x.new_zeros((*x.shape[:-1], self.out_features), dtype=torch.float32)
        row_scale = _row_absmax(rows).clamp_min_(_TINY).div_(self.levels)
        zero_point = self.levels + 1
        shifted = _to_uint8(rows.div(row_scale).round_(), zero_point)
        # The product carries the weight's channel scales; each row's own scale is applied
        # here, with the bias, in one pass.
        out = _int8_product(shifted, zero_point, self._packed, self.weight_scale, self._zero_points)
        out = torch.addcmul(self.bias, out, row_scale, out=out)
        return out.view(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"int8 per row (±{self.levels}) and channel"
        )


def quantize_linears(model: nn.Module) -> int:
    """Replace every `nn.Linear` of `model` by an `Int8Linear`, in place; returns how many
    were replaced."""
    return replace_linears(model, Int8Linear)


# Prepacked bf16 layers


def prepacked_available() -> bool:
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
