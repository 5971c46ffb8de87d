"""The export-time forwards compute what the original modules compute (eager, before any ONNX)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tamdeploy.exporters.rewrites import _is_motion_linear, _tap_sums, export_rewrites
from tamdeploy.models.modules import TAM, Action


@pytest.mark.parametrize(("h", "w"), [(1, 1), (1, 5), (4, 1), (2, 2), (5, 7), (8, 8)])
def test_tap_sums_are_the_sums_each_tap_of_a_same_3x3_conv_reads(h: int, w: int) -> None:
    x = torch.randn(3, 4, h, w, dtype=torch.float64)
    sums = _tap_sums(x)
    assert sums.shape == (3, 4, 9)
    for a in range(3):  # row offset a - 1
        for b in range(3):  # column offset b - 1
            one_hot = torch.zeros(4, 1, 3, 3, dtype=torch.float64)
            one_hot[:, 0, a, b] = 1.0
            read = F.conv2d(x, one_hot, padding=1, groups=4).sum((2, 3))
            torch.testing.assert_close(sums[..., a * 3 + b], read)
    torch.testing.assert_close(sums[..., 4], x.sum((2, 3)))


def _randomized(module: nn.Module, seed: int) -> nn.Module:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.3)
        for bn in module.modules():
            if isinstance(bn, nn.BatchNorm2d):
                bn.running_mean.copy_(torch.randn(bn.num_features, generator=generator))
                bn.running_var.copy_(torch.rand(bn.num_features, generator=generator) + 0.5)
    return module.eval()


def _rewritten_equals_original(module: nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        expected = module(x)
        with export_rewrites(module) as applied:
            got = module(x)
    assert applied, "no rewrite matched"
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("size", [(7, 9), (1, 1), (2, 3)])
def test_action_rewrite_computes_the_module(size: tuple[int, int]) -> None:
    module = _randomized(Action(nn.Conv2d(32, 16, 1), num_segments=4), seed=0).double()
    assert _is_motion_linear(module)  # ME from pooled sums: the full-resolution path never runs
    _rewritten_equals_original(module, torch.randn(8, 32, *size, dtype=torch.float64))


def test_action_rewrite_with_biases_and_a_bn_without_affine() -> None:
    module = Action(nn.Conv2d(32, 16, 1), num_segments=4)
    module.action_p3_squeeze = nn.Conv2d(32, 2, 1, bias=True)
    module.action_p3_conv1 = nn.Conv2d(2, 2, 3, padding=1, groups=2, bias=True)
    module.action_p3_bn1 = nn.BatchNorm2d(2, affine=False)
    module = _randomized(module, seed=1).double()
    assert _is_motion_linear(module)
    _rewritten_equals_original(module, torch.randn(8, 32, 6, 5, dtype=torch.float64))


def test_action_rewrite_falls_back_for_other_motion_layouts() -> None:
    module = Action(nn.Conv2d(32, 16, 1), num_segments=4)
    module.action_p3_conv1 = nn.Conv2d(2, 2, 5, padding=2, groups=2, bias=False)  # not a 3x3 'same' conv
    module = _randomized(module, seed=2).double()
    assert not _is_motion_linear(module)
    _rewritten_equals_original(module, torch.randn(8, 32, 6, 6, dtype=torch.float64))


def test_action_rewrite_batches_several_clips() -> None:
    module = _randomized(Action(nn.Conv2d(32, 16, 1), num_segments=4), seed=3).double()
    _rewritten_equals_original(module, torch.randn(12, 32, 5, 5, dtype=torch.float64))  # 3 clips of 4


def test_tam_rewrite_computes_the_module() -> None:
    module = _randomized(TAM(16, num_segments=4), seed=4).double()
    _rewritten_equals_original(module, torch.randn(8, 16, 5, 6, dtype=torch.float64))


def test_rewrites_are_gone_after_the_block() -> None:
    module = Action(nn.Conv2d(32, 16, 1), num_segments=4)
    with export_rewrites(module):
        assert "forward" in module.__dict__
    assert "forward" not in module.__dict__
