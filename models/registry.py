"""timm-style model registry: ``@register_model`` builders and ``create_model(name, **overrides)``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from torch import nn

from tamdeploy.errors import ModelConfigError
from tamdeploy.models.config import ModelConfig
from tamdeploy.models.resnet import ResNet

MIN_INPUT_SIZE = 32  # five stride-2 stages
_DEFAULTS: dict[str, ModelConfig] = {}
_BUILDERS: dict[str, Callable[[ModelConfig], nn.Module]] = {}


def register_model(default: ModelConfig) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register ``fn`` under ``default.arch``; ``fn(config)`` builds the network for a config."""

    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _DEFAULTS[default.arch] = default
        _BUILDERS[default.arch] = fn
        return fn

    return wrap


def list_models() -> list[str]:
    return sorted(_DEFAULTS)


def default_config(name: str) -> ModelConfig:
    if name not in _DEFAULTS:
        raise ModelConfigError(f"unknown architecture {name!r}; known: {', '.join(list_models())}")
    return _DEFAULTS[name]


def resolve_config(name: str, **overrides) -> ModelConfig:
    """The registered default for ``name`` with ``overrides`` (None values are ignored) applied."""
    cfg = default_config(name)
    overrides = {k: v for k, v in overrides.items() if v is not None}
    unknown = set(overrides) - set(ModelConfig.__dataclass_fields__)
    if unknown:
        raise ModelConfigError(f"unknown model option(s) {sorted(unknown)} for {name}")
    if "num_segments" in overrides and not cfg.is_video:
        raise ModelConfigError(f"{name} is an image model; it takes no num_segments")
    cfg = replace(cfg, **overrides)
    _validate(cfg)
    return cfg


def _validate(cfg: ModelConfig) -> None:
    if cfg.num_classes < 1:
        raise ModelConfigError(f"num_classes must be >= 1, got {cfg.num_classes}")
    if cfg.is_video and cfg.num_segments < 1:
        raise ModelConfigError(f"num_segments must be >= 1, got {cfg.num_segments}")
    if cfg.width <= 0:
        raise ModelConfigError(f"width must be > 0, got {cfg.width}")
    if cfg.tam_kernel_size < 1 or cfg.tam_kernel_size % 2 == 0:
        raise ModelConfigError(f"TAM kernel size must be odd and >= 1, got {cfg.tam_kernel_size}")
    if cfg.input_size < MIN_INPUT_SIZE:
        raise ModelConfigError(f"input size {cfg.input_size} is too small: the network downsamples by 32, "
                               f"use at least {MIN_INPUT_SIZE}")


def create_model(name: str, **overrides) -> ResNet:
    """Build ``name`` (see ``list_models()``) with its default config and ``overrides``, in eval mode."""
    cfg = resolve_config(name, **overrides)
    return build_model(cfg)


def build_model(cfg: ModelConfig) -> ResNet:
    _validate(cfg)
    if cfg.arch not in _BUILDERS:
        raise ModelConfigError(f"unknown architecture {cfg.arch!r}; known: {', '.join(list_models())}")
    return _BUILDERS[cfg.arch](cfg).eval()


def _video(arch: str, block: str, depth: int, num_classes: int) -> ModelConfig:
    return ModelConfig(arch=arch, block=block, depth=depth, num_classes=num_classes, num_segments=8)


def _resnet(cfg: ModelConfig) -> ResNet:
    return ResNet(cfg, dropout=0.5 if cfg.is_video else 0.0)


# Defaults follow the published models: TSN/TANet on Kinetics-400, ACTION-Net on Something-Something
# V2 (174 classes), SE-ResNet on ImageNet.
for _cfg in (
    _video("tsn_r50", "plain", 50, 400),
    _video("tsn_r101", "plain", 101, 400),
    _video("tanet_r50", "tam", 50, 400),
    _video("tanet_r101", "tam", 101, 400),
    _video("action_r50", "action", 50, 174),
    _video("action_r101", "action", 101, 174),
    ModelConfig(arch="se_resnet50", block="se", depth=50, num_classes=1000, num_segments=None),
    ModelConfig(arch="se_resnet101", block="se", depth=101, num_classes=1000, num_segments=None),
):
    register_model(_cfg)(_resnet)


def randomize_batchnorm_(model: nn.Module, seed: int = 0, affine: bool = False) -> nn.Module:
    """Give every BatchNorm non-trivial running statistics (in place), as trained networks have, so
    that random-weight demos and benchmarks do not run with BN as the identity; ``affine`` also draws
    its scale and shift (tests use that, so that a weight loaded into the wrong place shows). Returns
    the model in eval mode."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
                if affine and m.affine:
                    m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    return model.eval()
