"""Load any supported checkpoint into a tamdeploy network, and save tamdeploy's own format.

``load_checkpoint`` reads the file safely (``safe_load``), finds the state_dict, recognises the
layout (``layouts``), reads the architecture from the weights themselves (block type, depth, width,
T, TAM kernel size, classes), checks the caller's arguments against them and loads strictly.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tamdeploy.errors import CheckpointError, ModelConfigError
from tamdeploy.files import make_output_dir, sha256_file, write_atomic
from tamdeploy.models.config import ModelConfig
from tamdeploy.models.layouts import OWN_NETWORK_HINT, detect_layout, strip_module_prefix
from tamdeploy.models.registry import build_model, default_config, list_models, resolve_config
from tamdeploy.models.resnet import DEPTH_BLOCKS, ResNet
from tamdeploy.models.safe_load import load_torch_file

FORMAT_VERSION = 1
OWN_LAYOUT = "tamdeploy"
_NESTING_KEYS = ("state_dict", "model")
_MAX_NAMED = 5
# A weight name that only one block kind has; checked in this order, none of them means "plain".
_BLOCK_MARKERS = ((".tam.", "tam"), (".conv1.action_shift.", "action"), (".se.fc.", "se"))
_DEPTH_BY_LAYER3 = {blocks[2]: depth for depth, blocks in DEPTH_BLOCKS.items()}


@dataclass
class LoadedCheckpoint:
    """A network rebuilt from a checkpoint, in eval mode, with the config that rebuilds it."""

    model: ResNet
    config: ModelConfig
    layout: str  # name of the detected layout (``tamdeploy`` or one of ``layouts.LAYOUTS``)
    sha256: str  # of the checkpoint file
    path: Path
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Found:
    """A config read from the file, and whether the file fixes T (TAM weights or our own record)."""

    config: ModelConfig
    fixes_num_segments: bool


def load_checkpoint(
    path: str | os.PathLike,
    arch: str | None = None,
    num_segments: int | None = None,
    num_classes: int | None = None,
    trust_checkpoint: bool = False,
    default_num_segments: int | None = None,
) -> LoadedCheckpoint:
    """Rebuild the network stored in ``path``; the arguments must agree with the weights.

    ``num_segments`` may set T where the weights do not fix it (ACTION-Net, TSN); ``arch`` and
    ``num_classes`` only confirm what the weights say. ``default_num_segments`` is T where neither
    ``num_segments`` nor the weights say (the T of the model a checkpoint is compared with).
    ``trust_checkpoint`` lets the file's pickle run code (``torch.load(weights_only=False)``); never use
    it for files from unknown sources.
    """
    path = Path(path)
    obj, warnings = load_torch_file(path, trust_checkpoint)
    if _is_own_format(obj):
        state_dict, found = _read_own_format(obj, path)
        layout = OWN_LAYOUT
    else:
        raw = strip_module_prefix(_find_state_dict(obj, path))
        found_layout = detect_layout(raw, str(path))
        state_dict, dropped = found_layout.to_ours(raw)
        if dropped:
            warnings.append(f"ignored {len(dropped)} weight(s) outside the network: {_first(dropped)}")
        found = _infer_config(state_dict, str(path))
        layout = found_layout.name
    if num_segments is None and found.config.is_video and not found.fixes_num_segments:
        num_segments = default_num_segments
    config = _apply_arguments(found, arch, num_segments, num_classes, warnings)
    model = build_model(config)
    _load_strict(model, state_dict, f"{path} (layout {layout})", warnings)
    return LoadedCheckpoint(model.eval(), config, layout, sha256_file(path), path, warnings)


# what a checkpoint is called: PyTorch's own suffixes, and the .pth.tar (or .tar) many research repositories
# publish (TANet's official weights among them); other names are recognised by their content
def read_state_dict(path: str | os.PathLike,
                    trust_checkpoint: bool = False) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The raw state_dict of any checkpoint (``module.`` stripped, un-nested), read as safely as
    ``load_checkpoint`` reads it; for networks tamdeploy does not build itself (``--model``)."""
    path = Path(path)
    obj, warnings = load_torch_file(path, trust_checkpoint)
    if _is_own_format(obj):
        return _tensors_only(obj.get("state_dict"), path), warnings
    return strip_module_prefix(_find_state_dict(obj, path)), warnings


def save_checkpoint(
    model_or_loaded: nn.Module | LoadedCheckpoint,
    config: ModelConfig | None,
    path: str | os.PathLike,
    source_sha256: str | None = None,
) -> Path:
    """Write tamdeploy's format: the weights plus the config, so loading needs no guessing.

    ``config`` may be None for a ``LoadedCheckpoint`` or a ``ResNet`` (their own config is used).
    The file is written atomically: a temp file in the same folder, then ``os.replace``.
    """
    from tamdeploy import __version__  # here, not at import: tamdeploy's __init__ may import models

    model, config, source_sha256 = _unpack(model_or_loaded, config, source_sha256)
    state_dict = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    _check_fits(state_dict, config)
    record = {"format": FORMAT_VERSION, "config": config.to_dict(), "tamdeploy_version": __version__,
              "source_sha256": source_sha256}
    path = Path(path)
    _atomic_torch_save({OWN_LAYOUT: record, "state_dict": state_dict}, path)
    return path


# --- finding the weights -------------------------------------------------------------------------


def _is_own_format(obj: Any) -> bool:
    return isinstance(obj, Mapping) and isinstance(obj.get(OWN_LAYOUT), Mapping)


def _read_own_format(obj: Mapping, path: Path) -> tuple[dict[str, torch.Tensor], _Found]:
    record = obj[OWN_LAYOUT]
    if record.get("format") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} is tamdeploy format {record.get('format')!r}; this tamdeploy reads format "
            f"{FORMAT_VERSION}: upgrade tamdeploy"
        )
    try:
        config = ModelConfig.from_dict(record["config"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path} has a damaged tamdeploy config ({e}); re-export it") from None
    return _tensors_only(obj.get("state_dict"), path), _Found(config, fixes_num_segments=True)


def _find_state_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """The state_dict: the object itself, or one nested under ``state_dict`` / ``model``."""
    for _ in range(3):
        if isinstance(obj, nn.Module):  # a pickled whole model, only reachable with trust
            return obj.state_dict()
        if not isinstance(obj, Mapping):
            break
        nested = next((obj[k] for k in _NESTING_KEYS if k in obj), None)
        if nested is None:
            return _tensors_only(obj, path)
        obj = nested
    raise CheckpointError(
        f"{path} holds no recognisable weights (found a {type(obj).__name__}); expected a state_dict, "
        f"or a dict with one under {' or '.join(map(repr, _NESTING_KEYS))}"
    )


def _tensors_only(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f"{path} holds no recognisable weights (no non-empty state_dict)")
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor) or not isinstance(k, str)]
    if len(bad) == len(obj):
        keys = ", ".join(map(str, list(obj)[:_MAX_NAMED]))
        raise CheckpointError(f"{path} holds no recognisable weights (top-level keys: {keys})")
    if bad:
        raise CheckpointError(
            f"{path}: the state_dict must hold only tensors, but {bad[0]!r} is a {type(obj[bad[0]]).__name__}"
        )
    return dict(obj)


# --- reading the architecture from the weights ---------------------------------------------------


def _infer_config(sd: dict[str, torch.Tensor], source: str) -> _Found:
    block = next((kind for marker, kind in _BLOCK_MARKERS if any(marker in k for k in sd)), "plain")
    depth = _depth(sd, source)
    arch = _arch_for(block, depth, source)
    overrides: dict[str, Any] = {
        "width": _require(sd, "conv1.weight", source).shape[0] / 64,
        "num_classes": _require(sd, "fc.weight", source).shape[0],
    }
    if block == "tam":
        overrides["num_segments"] = _first_ending(sd, ".tam.G.0.weight", source).shape[1]  # [alpha*T, T]
        overrides["tam_kernel_size"] = _first_ending(sd, ".tam.G.3.weight", source).shape[0]  # [K, alpha*T]
    return _Found(resolve_config(arch, **overrides), fixes_num_segments=block == "tam")


def _depth(sd: dict[str, torch.Tensor], source: str) -> int:
    if any(k.startswith("layer1.0.conv2.") for k in sd) and not any(k.startswith("layer1.0.conv3.") for k in sd):
        raise CheckpointError(f"{source}: its blocks are BasicBlocks (ResNet-18/34), a network tamdeploy does not "
                              f"build; {OWN_NETWORK_HINT}")
    indices = {int(m.group(1)) for k in sd if (m := re.match(r"layer3\.(\d+)\.", k))}
    blocks = max(indices) + 1 if indices else 0
    if blocks not in _DEPTH_BY_LAYER3:
        known = ", ".join(f"{n} (ResNet-{d})" for n, d in _DEPTH_BY_LAYER3.items())
        raise CheckpointError(f"{source}: layer3 has {blocks} blocks; tamdeploy builds {known}; {OWN_NETWORK_HINT}")
    return _DEPTH_BY_LAYER3[blocks]


def _arch_for(block: str, depth: int, source: str) -> str:
    for name in list_models():
        cfg = default_config(name)
        if (cfg.block, cfg.depth) == (block, depth):
            return name
    raise CheckpointError(f"{source}: no registered network has {block} blocks at depth {depth}; {OWN_NETWORK_HINT}")


def _require(sd: dict[str, torch.Tensor], key: str, source: str) -> torch.Tensor:
    if key not in sd:
        raise CheckpointError(f"{source}: no {key} in the weights; the checkpoint is incomplete")
    return sd[key]


def _first_ending(sd: dict[str, torch.Tensor], suffix: str, source: str) -> torch.Tensor:
    key = next((k for k in sd if k.endswith(suffix)), None)
    return _require(sd, key or f"*{suffix}", source)


# --- the caller's arguments ----------------------------------------------------------------------


def _apply_arguments(found: _Found, arch: str | None, num_segments: int | None,
                     num_classes: int | None, warnings: list[str]) -> ModelConfig:
    cfg = found.config
    if arch is not None and arch != cfg.arch:
        wanted = default_config(arch)  # an unknown name is a ModelConfigError listing the known ones
        raise CheckpointError(
            f"arch {arch} ({wanted.block} blocks, depth {wanted.depth}) does not match the weights, "
            f"which hold {cfg.block} blocks at depth {cfg.depth} ({cfg.arch}); drop --arch or pick {cfg.arch}"
        )
    if num_classes is not None and num_classes != cfg.num_classes:
        raise CheckpointError(
            f"num_classes={num_classes} contradicts the classifier weights, which have {cfg.num_classes} classes"
        )
    if not cfg.is_video:
        if num_segments is not None:
            raise ModelConfigError(f"{cfg.arch} is an image model; it takes no num_segments")
        return cfg
    if num_segments is None:
        if not found.fixes_num_segments:
            warnings.append(
                f"{cfg.arch} weights do not record T; assumed num_segments={cfg.num_segments}: "
                "pass --num-segments if the model was trained with another T"
            )
        return cfg
    if cfg.block == "tam" and num_segments != cfg.num_segments:
        raise CheckpointError(
            f"num_segments={num_segments} contradicts the TAM weights, which were trained for "
            f"T={cfg.num_segments} (tam.G.0.weight is [alpha*T, T]); drop --num-segments or use {cfg.num_segments}"
        )
    return replace(cfg, num_segments=num_segments)  # build_model validates it


# --- loading ------------------------------------------------------------------------------------


def _load_strict(model: nn.Module, sd: dict[str, torch.Tensor], source: str, warnings: list[str]) -> None:
    """Load every weight or fail naming the first few problems; never a partial load."""
    expected = model.state_dict()
    # BatchNorm counters only matter in training; checkpoints from before torch 0.4.1 lack them.
    counters = {k: torch.zeros((), dtype=torch.long) for k in expected
                if k.endswith(".num_batches_tracked") and k not in sd}
    if counters and len(counters) < len(expected):
        warnings.append(f"{len(counters)} BatchNorm num_batches_tracked counter(s) absent; set to 0")
    sd = {**sd, **counters}
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    mismatched = [f"{k} {list(v.shape)} (model {list(expected[k].shape)})"
                  for k, v in sd.items() if k in expected and v.shape != expected[k].shape]
    problems = [f"{label} {_first(keys)}" for label, keys in
                (("missing", missing), ("unexpected", unexpected), ("shape mismatch:", mismatched)) if keys]
    if problems:
        raise CheckpointError(f"{source} does not fit the network it describes: {'; '.join(problems)}")
    dtypes = sorted({str(v.dtype) for v in sd.values() if v.is_floating_point() and v.dtype != torch.float32})
    if dtypes:
        warnings.append(f"weights stored as {', '.join(dtypes)} were converted to float32")
    model.load_state_dict(sd, strict=True)


def _first(keys: list[str]) -> str:
    shown = ", ".join(keys[:_MAX_NAMED])
    return shown + (f" (+{len(keys) - _MAX_NAMED} more)" if len(keys) > _MAX_NAMED else "")


# --- saving -------------------------------------------------------------------------------------


def _unpack(model_or_loaded: nn.Module | LoadedCheckpoint, config: ModelConfig | None,
            source_sha256: str | None) -> tuple[nn.Module, ModelConfig, str | None]:
    if isinstance(model_or_loaded, LoadedCheckpoint):
        loaded = model_or_loaded
        return loaded.model, config or loaded.config, source_sha256 or loaded.sha256
    config = config or getattr(model_or_loaded, "config", None)
    if not isinstance(config, ModelConfig):
        raise ModelConfigError("save_checkpoint needs the model's ModelConfig; pass config=")
    return model_or_loaded, config, source_sha256


def _check_fits(state_dict: dict[str, torch.Tensor], config: ModelConfig) -> None:
    """Refuse to write a file whose config would not rebuild these weights."""
    with torch.device("meta"):  # shapes only: nothing is allocated
        expected = build_model(config).state_dict()
    wrong = [k for k in expected.keys() | state_dict.keys()
             if k not in expected or k not in state_dict or expected[k].shape != state_dict[k].shape]
    if wrong:
        raise ModelConfigError(f"the weights do not match config {config.arch}: {_first(sorted(wrong))}")


def _atomic_torch_save(obj: Any, path: Path) -> None:
    make_output_dir(path.parent)
    def save(tmp: Path) -> None:
        # through a file object: given a path, torch names the archive inside after the (random) temp
        # file, so the same weights would give different bytes on every save
        with open(tmp, "wb") as f:
            torch.save(obj, f)

    write_atomic(path, save)
