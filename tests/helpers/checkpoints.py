"""Checkpoints in other projects' layouts, made from a tamdeploy model's state_dict, for tests.

Each ``to_*`` function re-keys tamdeploy's names into one project's names. They are written from
those projects' code, independently of ``tamdeploy.models.layouts`` (which maps the other way), so
a round trip through both checks the loader rather than restating it.
"""

from __future__ import annotations

import builtins
import os
import re
import sys
import types
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tamdeploy.models import randomize_batchnorm_

StateDict = dict[str, torch.Tensor]
_BLOCK = re.compile(r"^(layer\d+\.\d+)\.(.+)$")


def randomize_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random BatchNorm statistics and affine terms, and a random ACTION shift, so that a weight
    loaded into the wrong place changes the output (their defaults are the same in every model)."""
    randomize_batchnorm_(model, seed=seed, affine=True)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("action_shift.weight"):
                param.copy_(torch.rand(param.shape, generator=gen))
    return model.eval()


def to_tanet_official(sd: StateDict, old_names: bool = False) -> StateDict:
    """liu-zhy/temporal-adaptive-module: TSN wrapper (``module.base_model``, head ``new_fc``), every
    block a TemporalBottleneck holding the torchvision block as ``net`` and the TAM as ``tam``; the
    first releases named the TAM branches ``self_conv.conv_f`` (G) and ``self_conv.conv_g`` (L)."""
    out = {}
    for key, value in sd.items():
        if key.startswith("fc."):
            out["module.new_fc." + key[3:]] = value
            continue
        m = _BLOCK.match(key)
        if m and m.group(2).startswith("tam."):
            rest = m.group(2)
            if old_names:
                rest = rest.replace("tam.G.", "self_conv.conv_f.").replace("tam.L.", "self_conv.conv_g.")
            key = f"{m.group(1)}.{rest}"
        elif m:
            key = f"{m.group(1)}.net.{m.group(2)}"
        out["module.base_model." + key] = value
    return out


def to_mmaction2(sd: StateDict, tanet: bool = True) -> StateDict:
    """mmaction2: ``backbone`` built of ConvModules (``conv``/``bn``), TANet's TABlock wraps each
    block as ``block``; head ``cls_head.fc_cls``."""
    out = {}
    wrap = "block." if tanet else ""
    for key, value in sd.items():
        if key.startswith("fc."):
            out["cls_head.fc_cls." + key[3:]] = value
            continue
        if key.startswith("conv1."):
            key = "conv1.conv." + key[6:]
        elif key.startswith("bn1."):
            key = "conv1.bn." + key[4:]
        elif m := _BLOCK.match(key):
            block, rest = m.groups()
            rest = re.sub(r"^conv(\d)\.", r"conv\1.conv.", rest)
            rest = re.sub(r"^bn(\d)\.", r"conv\1.bn.", rest)
            rest = rest.replace("downsample.0.", "downsample.conv.").replace("downsample.1.", "downsample.bn.")
            key = f"{block}.{rest}" if rest.startswith("tam.") else f"{block}.{wrap}{rest}"
        out["backbone." + key] = value
    return out


def to_tsn_style(sd: StateDict, head: str = "new_fc") -> StateDict:
    """ACTION-Net / TSN / TSM code: torchvision names under ``base_model``, head ``new_fc`` (or
    ``base_model.fc`` when trained with dropout 0)."""
    prefix = {"new_fc": "new_fc.", "base_model.fc": "base_model.fc."}[head]
    return {(prefix + k[3:] if k.startswith("fc.") else "base_model." + k): v for k, v in sd.items()}


def with_module_prefix(sd: StateDict) -> StateDict:
    return {"module." + k: v for k, v in sd.items()}


WRITERS: dict[str, Callable[..., StateDict]] = {
    "tanet-official": to_tanet_official,
    "mmaction2": to_mmaction2,
    "action-net-official": to_tsn_style,
    "tsn-official": to_tsn_style,
    "torchvision": dict,
}


@contextmanager
def fake_mmengine() -> Iterator[dict[str, type]]:
    """Classes importable as mmengine's (``HistoryBuffer``, ``ConfigDict``) while the block runs;
    afterwards the modules are gone, as on a machine without mmengine."""
    class HistoryBuffer:
        def __init__(self) -> None:
            self.max_length = 1000
            self._log_history = np.arange(4, dtype=np.float64)
            self._count_history = np.ones(4, dtype=np.int64)

    class ConfigDict(dict):
        pass

    classes = {"mmengine.logging.history_buffer": HistoryBuffer, "mmengine.config.config": ConfigDict}
    names = ["mmengine", "mmengine.logging", "mmengine.config", *classes]
    saved = {n: sys.modules.get(n) for n in names}
    for name in names:
        sys.modules[name] = types.ModuleType(name)
    for module, cls in classes.items():
        cls.__module__ = module
        cls.__qualname__ = cls.__name__
        setattr(sys.modules[module], cls.__name__, cls)
    try:
        yield {cls.__name__: cls for cls in classes.values()}
    finally:
        for name, old in saved.items():
            if old is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = old


def save_mmaction2(sd: StateDict, path: Path, tanet: bool = True) -> Path:
    """An mmaction2 / mmengine training checkpoint: weights under ``state_dict`` next to ``meta``
    and ``message_hub`` holding numpy arrays and scalars, a HistoryBuffer and a ConfigDict."""
    with fake_mmengine() as mm:
        cfg = mm["ConfigDict"](type="Recognizer2D", backbone={"type": "TANet", "num_segments": 8})
        ckpt = {
            "meta": {"epoch": 100, "seed": np.int64(0), "best_acc": np.float64(0.71),
                     "dataset_meta": {"mean": np.array([123.675, 116.28, 103.53])}, "cfg": cfg},
            "state_dict": OrderedDict(to_mmaction2(sd, tanet)),
            "message_hub": {"log_scalars": {"train/loss": mm["HistoryBuffer"]()}},
        }
        torch.save(ckpt, path)
    return path


def save_layout(sd: StateDict, layout: str, path: Path, **options: object) -> Path:
    """``sd`` re-keyed into ``layout`` and saved under ``state_dict`` (the usual training format)."""
    torch.save({"state_dict": WRITERS[layout](sd, **options)}, path)
    return path


# --- pickles that would run code when loaded (the safe loader must refuse them) ------------------------


class RunsCommand:
    """A pickle payload that would run a shell command when loaded (it touches ``marker``)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class OpensFile(RunsCommand):
    def __reduce__(self):
        return builtins.open, (str(self.marker), "w")


class CallsNumpy(RunsCommand):
    def __reduce__(self):  # a function from a data-only namespace: replaced, never called
        return np.save, (str(self.marker), np.zeros(1))
