"""int8 layers with a scale per input row and per weight channel (`bert_core.inference.linear_layers`)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bert_core.inference.linear_layers import Int8Linear, _to_uint8, activation_levels, quantize_linears


def _linear(inputs: int = 48, outputs: int = 40, seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(inputs, outputs)


# This machine's levels (127 where oneDNN sums 8-bit activations exactly) and the 7 bits
# that CPUs without VNNI get.
LEVELS = [None, 63]


@pytest.mark.parametrize("levels", LEVELS)
def test_close_to_the_fp32_layer(levels: int | None) -> None:
    linear = _linear()
    x = torch.randn(64, 48) * torch.linspace(0.1, 10.0, 64).unsqueeze(1)  # rows of very different range
    with torch.inference_mode():
        reference = linear(x)
        out = Int8Linear(linear, levels=levels)(x)
    assert out.dtype == torch.float32 and out.shape == reference.shape
    # per row, the error is a small share of that row's own range, loud rows and quiet alike
    error = (out - reference).abs().amax(dim=1)
    scale = reference.abs().amax(dim=1)
    assert bool((error <= 0.03 * scale).all())


def test_the_sums_are_exact_integer_products() -> None:
    """With unit weight and row scales the layer returns the integer product itself: no
    16-bit overflow at the extremes of the activation range, at the levels this machine's
    oneDNN is found to sum exactly (also with `ONEDNN_MAX_CPU_ISA=AVX2`: then 63)."""
    levels = activation_levels()
    assert levels in (63, 127)
    linear = nn.Linear(64, 16)
    weight = torch.full((16, 64), 127.0)
    weight[1::2] = -127.0  # extreme weights of both signs
    with torch.no_grad():
        linear.weight.copy_(weight / 127.0)
        linear.bias.zero_()
    x = torch.full((3, 64), float(levels))
    x[1] = -float(levels)
    x[2, ::2] = -float(levels)
    expected = (x / levels) @ (weight / 127.0).t()
    with torch.inference_mode():
        out = Int8Linear(linear, levels=levels)(x / levels)
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("levels", [127, 63, 1])
def test_activations_become_uint8_offset_by_the_zero_point(levels: int) -> None:
    """The fast conversion (through int8, the zero point added in wrapping uint8) gives the
    same bytes as the plain one, at both ends of the range and at zero."""
    whole = torch.arange(-levels, levels + 1, dtype=torch.float32).repeat(3, 1)
    expected = (whole + levels + 1).to(torch.uint8)
    assert torch.equal(_to_uint8(whole, levels + 1), expected)


@pytest.mark.parametrize("levels", LEVELS)
def test_a_row_scores_the_same_alone_or_beside_others(levels: int | None) -> None:
    layer = Int8Linear(_linear(seed=1), levels=levels)
    torch.manual_seed(2)
    quiet = torch.randn(5, 48) * 0.01
    loud = torch.randn(30, 48) * 100.0
    with torch.inference_mode():
        alone = layer(quiet)
        together = layer(torch.cat([loud[:10], quiet, loud[10:]]))[10:15]
    assert torch.equal(alone, together)


def test_keeps_leading_dimensions_and_handles_zero_and_empty_inputs() -> None:
    linear = _linear(seed=3)
    layer = Int8Linear(linear)
    with torch.inference_mode():
        assert layer(torch.randn(2, 7, 48)).shape == (2, 7, 40)
        zeros = layer(torch.zeros(3, 48))
        assert torch.allclose(zeros, linear.bias.detach().expand(3, 40))
        assert layer(torch.zeros(0, 48)).shape == (0, 40)


def test_quantize_linears_replaces_every_linear() -> None:
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 3)))
    assert quantize_linears(model) == 3
    assert all(isinstance(m, Int8Linear) for m in (model[0], model[2][0], model[2][1]))
    with torch.inference_mode():
        assert model(torch.randn(4, 8)).shape == (4, 3)


@pytest.mark.parametrize("levels", [0, 128, 255])
def test_levels_outside_int8_are_refused(levels: int) -> None:
    with pytest.raises(ValueError, match=r"within 1\.\.127"):
        Int8Linear(_linear(), levels=levels)


def test_no_gradient_is_claimed() -> None:
    x = torch.randn(3, 48, requires_grad=True)
    assert not Int8Linear(_linear())(x).requires_grad
