"""``--model path/to/file.py:factory``: a user's own network, whose TAM / ACTION modules the rewrites
recognise by structure. Loading the file runs its code, as importing any Python module does."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch
from torch import nn

from tamdeploy.errors import ExportError
from tamdeploy.files import sha256_file
from tamdeploy.models.config import ModelConfig


def parse_model_spec(spec: str) -> tuple[Path, str]:
    path, sep, factory = spec.rpartition(":")
    if not sep or not path or not factory:
        raise ExportError(f"`model_spec` must look like path/to/file.py:factory, got {spec!r}")
    return Path(path), factory


def load_user_model(spec: str) -> nn.Module:
    path, factory = parse_model_spec(spec)
    if not path.is_file():
        raise ExportError(f"`model_spec` file {path} does not exist")
    module_name = f"tamdeploy_user_model_{abs(hash(str(path.resolve())))}"
    spec_obj = importlib.util.spec_from_file_location(module_name, path)
    if spec_obj is None or spec_obj.loader is None:
        raise ExportError(f"`model_spec` file {path} is not a Python file")
    module = importlib.util.module_from_spec(spec_obj)
    sys.modules[module_name] = module
    try:
        spec_obj.loader.exec_module(module)
    except Exception as e:
        raise ExportError(f"`model_spec` file {path} failed to import: {type(e).__name__}: {e}") from e
    fn = getattr(module, factory, None)
    if not callable(fn):
        raise ExportError(f"`model_spec` file {path} defines no function {factory!r}")
    try:
        model = fn()
    except Exception as e:  # the user's code: their mistake to fix, not a bug in tamdeploy
        raise ExportError(f"{path}:{factory}() raised {type(e).__name__}: {e}") from e
    if not isinstance(model, nn.Module):
        raise ExportError(f"{path}:{factory}() returned {type(model).__name__}, not a torch.nn.Module")
    return model.eval()


def _infer_num_segments(model: nn.Module) -> int | None:
    from tamdeploy.exporters.rewrites import is_action, is_tam, num_segments_of

    found = {num_segments_of(m) for m in model.modules() if is_tam(m) or is_action(m)}
    if len(found) > 1:
        raise ExportError(f"the network's TAM/ACTION modules disagree on T: {sorted(found)}")
    return found.pop() if found else None


def _check_shapes(model: nn.Module, state_dict: dict, checkpoint: Path, spec: str) -> None:
    """A weight of another shape is the user's checkpoint not fitting the user's network (load_state_dict
    would raise its many-line RuntimeError even with strict=False)."""
    own = model.state_dict()
    wrong = [f"{k} {list(v.shape)} vs {list(own[k].shape)}" for k, v in state_dict.items()
             if k in own and hasattr(v, "shape") and tuple(v.shape) != tuple(own[k].shape)]
    if wrong:
        more = f" (+{len(wrong) - 3} more)" if len(wrong) > 3 else ""
        raise ExportError(f"{checkpoint} does not fit {spec}: {', '.join(wrong[:3])}{more} (checkpoint vs network)")


def load_user_model_with_weights(spec: str, checkpoint: Path, *, num_segments: int | None, trust: bool,
                                 input_size: int = 224) -> tuple[nn.Module, ModelConfig, str, str, list[str]]:
    """(model, config, layout, checkpoint sha256, warnings) for ``--model file.py:factory``.

    The input is [N, T, 3, S, S] when the network has TAM/ACTION modules or ``num_segments`` is
    given, else [N, 3, S, S]; the class count is read from one forward pass.
    """
    from tamdeploy.models.checkpoints import read_state_dict

    model = load_user_model(spec)
    state_dict, warnings = read_state_dict(checkpoint, trust)
    _check_shapes(model, state_dict, checkpoint, spec)
    result = model.load_state_dict(state_dict, strict=False)
    problems = [*(f"missing {k}" for k in result.missing_keys), *(f"unexpected {k}" for k in result.unexpected_keys)]
    if problems:
        shown = ", ".join(problems[:5])
        raise ExportError(f"{checkpoint} does not fit {spec}: {shown}"
                          + (f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""))
    model.eval()
    detected = _infer_num_segments(model)
    if num_segments is not None and detected is not None and num_segments != detected:
        raise ExportError(f"`num_segments={num_segments}` contradicts the network's modules (T={detected})")
    t = num_segments or detected
    shape = (1, t, 3, input_size, input_size) if t else (1, 3, input_size, input_size)
    try:
        with torch.no_grad():
            out = model(torch.zeros(shape))
    except Exception as e:
        hint = "" if t else "; a video network needs --num-segments (T) when it has no TAM/ACTION module"
        raise ExportError(f"{spec} failed on an input of shape {list(shape)}: {type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else ''}{hint}") from e
    if out.dim() != 2:
        raise ExportError(f"{spec} returns shape {tuple(out.shape)}; tamdeploy exports classifiers "
                          f"returning [N, classes]")
    _, factory = parse_model_spec(spec)
    config = ModelConfig(arch=f"custom:{factory}", block="custom", depth=0, num_classes=int(out.shape[1]),
                         num_segments=t, input_size=input_size)
    return model, config, "custom", sha256_file(checkpoint), warnings
