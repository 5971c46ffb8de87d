"""Each module against an independent formulation of what the original computes."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tamdeploy.models import TAM, Action, SELayer, create_model
from tamdeploy.models.modules import initial_shift_weight

torch.manual_seed(0)


def randomise_bn(module: nn.Module) -> None:
    """Non-trivial BatchNorm statistics so eval-mode BN is not the identity."""
    g = torch.Generator().manual_seed(1)
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)


class FixedKernel(nn.Module):
    """Stands in for TAM's global branch: the same kernel for every (clip, channel) row."""

    def __init__(self, kernel: list[float]) -> None:
        super().__init__()
        self.kernel = torch.tensor(kernel)

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        return self.kernel.expand(rows.shape[0], -1)


class UnitGate(nn.Module):
    """Stands in for TAM's local branch: a gate of ones."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(x)


def test_se_layer_matches_explicit_math():
    se = SELayer(64).eval()
    x = torch.randn(3, 64, 5, 7)
    w1, w2 = se.fc[0].weight, se.fc[2].weight
    squeeze = x.mean(dim=(2, 3))
    expected = x * torch.sigmoid(torch.relu(squeeze @ w1.T) @ w2.T)[:, :, None, None]
    torch.testing.assert_close(se(x), expected, rtol=1e-6, atol=1e-6)


def tam_by_loops(tam: TAM, x: torch.Tensor) -> torch.Tensor:
    """TAM written from the paper's equations with explicit loops over time (no grouped conv)."""
    nt, c, h, w = x.shape
    t = tam.num_segments
    n = nt // t
    x5 = x.view(n, t, c, h, w)
    pooled = x5.mean(dim=(3, 4)).permute(0, 2, 1)  # (n, c, t)
    kernel = tam.G(pooled.reshape(n * c, t)).view(n, c, -1)
    local = tam.L(pooled)  # (n, c, t)
    k = kernel.shape[-1]
    p = (k - 1) // 2
    y = torch.zeros_like(x5)
    for ti in range(t):
        for j in range(k):
            src = ti + j - p
            if 0 <= src < t:
                weight = (kernel[:, :, j] * local[:, :, src])[:, :, None, None]
                y[:, ti] += weight * x5[:, src]
    return y.view(nt, c, h, w)


@pytest.mark.parametrize("t,k", [(8, 3), (4, 5), (3, 1)])
def test_tam_matches_loop_formulation(t, k):
    tam = TAM(32, t, kernel_size=k)
    randomise_bn(tam)
    tam.eval()
    x = torch.randn(2 * t, 32, 5, 6)
    torch.testing.assert_close(tam(x), tam_by_loops(tam, x), rtol=1e-5, atol=1e-5)


def test_tam_with_centre_kernel_and_unit_local_is_identity():
    t = 6
    tam = TAM(16, t).eval()
    tam.G = FixedKernel([0.0, 1.0, 0.0])
    tam.L = UnitGate()
    x = torch.randn(3 * t, 16, 4, 4)
    torch.testing.assert_close(tam(x), x, rtol=0, atol=0)


def test_tam_accepts_mmaction2_argument_names():
    tam = TAM(in_channels=64, num_segments=8, alpha=2, beta=4, adaptive_kernel_size=5,
              conv1d_kernel_size=3, adaptive_convolution_stride=1, adaptive_convolution_padding=2)
    assert tam.kernel_size == 5 and tam.padding == 2
    assert tam.G[0].weight.shape == (16, 8) and tam.G[3].weight.shape == (5, 16)
    assert tam.L[0].weight.shape == (16, 64, 3) and tam.L[3].weight.shape == (64, 16, 1)


def shift_by_slicing(x: torch.Tensor, t: int, fold: int) -> torch.Tensor:
    """TSM-style shift from slices: first fold takes frame t+1, next fold frame t-1, rest unchanged."""
    n = x.shape[0] // t
    x5 = x.view(n, t, *x.shape[1:])
    out = torch.zeros_like(x5)
    out[:, :-1, :fold] = x5[:, 1:, :fold]
    out[:, 1:, fold : 2 * fold] = x5[:, :-1, fold : 2 * fold]
    out[:, :, 2 * fold :] = x5[:, :, 2 * fold :]
    return out.view_as(x)


def test_action_initial_shift_equals_sliced_channel_shift():
    t, c, h, w = 5, 64, 3, 4
    action = Action(nn.Conv2d(c, 16, 1, bias=False), t).eval()
    captured = {}
    action.action_shift.register_forward_hook(lambda m, i, o: captured.setdefault("out", o))
    x = torch.randn(2 * t, c, h, w)
    action(x)
    shifted = captured["out"].view(2, h, w, c, t).permute(0, 4, 3, 1, 2).reshape(2 * t, c, h, w)
    torch.testing.assert_close(shifted, shift_by_slicing(x, t, c // 8), rtol=0, atol=0)
    assert torch.equal(action.action_shift.weight, initial_shift_weight(c))


def action_by_equations(a: Action, x: torch.Tensor) -> torch.Tensor:
    """ACTION-Net from its equations, written with conv1d/conv3d on (n, c, t, h, w) tensors."""
    nt, c, h, w = x.shape
    t = a.num_segments
    n = nt // t
    x5 = x.view(n, t, c, h, w).permute(0, 2, 1, 3, 4)  # n c t h w
    # trained depthwise temporal conv == conv3d with a (3, 1, 1) kernel per channel
    xs = F.conv3d(x5, a.action_shift.weight.view(c, 1, 3, 1, 1), padding=(1, 0, 0), groups=c)
    ste = torch.sigmoid(a.action_p1_conv1(xs.mean(1, keepdim=True)))  # n 1 t h w
    pooled = xs.mean(dim=(3, 4))  # n c t
    squeezed = torch.einsum("rc,nct->nrt", a.action_p2_squeeze.weight[:, :, 0, 0], pooled)
    ce = torch.relu(F.conv1d(squeezed, a.action_p2_conv1.weight, padding=1))
    ce = torch.sigmoid(torch.einsum("cr,nrt->nct", a.action_p2_expand.weight[:, :, 0, 0], ce))
    frames = xs.permute(0, 2, 1, 3, 4).reshape(nt, c, h, w)
    x3 = a.action_p3_bn1(a.action_p3_squeeze(frames))
    moved = a.action_p3_conv1(x3).view(n, t, -1, h, w)
    diff = torch.zeros_like(moved)
    diff[:, : t - 1] = moved[:, 1:] - x3.view(n, t, -1, h, w)[:, : t - 1]
    me = torch.einsum("cr,ntr->nct", a.action_p3_expand.weight[:, :, 0, 0], diff.mean(dim=(3, 4)))
    me = torch.sigmoid(me)
    gate = ste + ce[..., None, None] + me[..., None, None] + 3.0  # sum of x*s + x over three paths
    mixed = (xs * gate).permute(0, 2, 1, 3, 4).reshape(nt, c, h, w)
    return a.net(mixed)


def test_action_matches_equation_formulation_with_trained_shift():
    t, c = 4, 64
    action = Action(nn.Conv2d(c, 32, 1, bias=False), t)
    with torch.no_grad():
        action.action_shift.weight.normal_()  # a trained shift is no longer a pure shift
    randomise_bn(action)
    action.eval()
    x = torch.randn(2 * t, c, 6, 5)
    torch.testing.assert_close(action(x), action_by_equations(action, x), rtol=1e-4, atol=1e-5)


def test_se_sits_after_bn3_before_residual_add():
    """SE with zeroed fc weights scales by sigmoid(0) = 1/2: same as a plain net with bn3 halved."""
    se_net = create_model("se_resnet50", width=0.25, num_classes=7)
    randomise_bn(se_net)
    plain = create_model("tsn_r50", width=0.25, num_classes=7)
    plain.num_segments = None  # use the backbone as an image model
    state = {k: v for k, v in se_net.state_dict().items() if ".se." not in k}
    for key in [k for k in state if ".bn3.weight" in k or ".bn3.bias" in k]:
        state[key] = state[key] * 0.5
    plain.load_state_dict(state)
    for m in se_net.modules():
        if isinstance(m, SELayer):
            nn.init.zeros_(m.fc[2].weight)
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(se_net(x), plain(x), rtol=1e-4, atol=1e-5)


def test_tanet_with_identity_tam_equals_tsn():
    tanet = create_model("tanet_r50", width=0.25, num_segments=4, num_classes=5)
    randomise_bn(tanet)
    tsn = create_model("tsn_r50", width=0.25, num_segments=4, num_classes=5)
    tsn.load_state_dict({k: v for k, v in tanet.state_dict().items() if ".tam." not in k})
    for m in tanet.modules():
        if isinstance(m, TAM):
            m.G = FixedKernel([0.0, 1.0, 0.0])
            m.L = UnitGate()
    x = torch.randn(2, 4, 3, 64, 64)
    torch.testing.assert_close(tanet(x), tsn(x), rtol=1e-5, atol=1e-5)


def test_video_model_averages_frame_logits():
    net = create_model("tsn_r50", width=0.25, num_segments=3, num_classes=6)
    x = torch.randn(2, 3, 3, 64, 64)
    frames = copy.deepcopy(net)
    frames.num_segments = None
    per_frame = frames(x.view(6, 3, 64, 64)).view(2, 3, 6)
    torch.testing.assert_close(net(x), per_frame.mean(1), rtol=1e-6, atol=1e-6)
    assert net(x).shape == (2, 6)
