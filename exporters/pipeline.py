"""``tamdeploy export``: checkpoint (or user network + checkpoint) -> ONNX, then the parity check."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from torch import nn

from tamdeploy.errors import ExportError
from tamdeploy.exporters.onnx_export import ExportOptions, ExportResult, export_model
from tamdeploy.exporters.parity import ParityResult, check_export_parity
from tamdeploy.exporters.user_model import parse_model_spec
from tamdeploy.files import check_writable, staged_output
from tamdeploy.models.config import ModelConfig
from tamdeploy.models.registry import MIN_INPUT_SIZE


@dataclass
class ExportRun:
    export: ExportResult
    parity: ParityResult | None
    layout: str
    warnings: list[str]


def default_output(checkpoint: Path) -> Path:
    """``model.onnx`` beside ``model.pth``; ``model.pth.tar`` (one checkpoint suffix) gives ``model.onnx`` too."""
    name = checkpoint.name
    stem = name[: -len(".pth.tar")] if name.lower().endswith(".pth.tar") else checkpoint.stem
    return checkpoint.with_name(stem + ".onnx")


def _apply_input_size(cfg: ModelConfig, input_size: int | None) -> ModelConfig:
    if input_size is None:
        return cfg
    if input_size < MIN_INPUT_SIZE:
        raise ExportError(f"`input_size={input_size}` is too small: these networks downsample by 32, "
                          f"use at least {MIN_INPUT_SIZE}")
    return replace(cfg, input_size=input_size)


def _load(checkpoint: Path, arch: str | None, num_segments: int | None, num_classes: int | None,
          input_size: int | None, model_spec: str | None, trust: bool,
          ) -> tuple[nn.Module, ModelConfig, str, str, list[str]]:
    """(model, config, layout, checkpoint sha256, warnings)."""
    if model_spec is None:
        from tamdeploy.models import load_checkpoint

        loaded = load_checkpoint(checkpoint, arch=arch, num_segments=num_segments, num_classes=num_classes,
                                 trust_checkpoint=trust)
        return loaded.model, loaded.config, loaded.layout, loaded.sha256, list(loaded.warnings)
    from tamdeploy.exporters.user_model import load_user_model_with_weights

    return load_user_model_with_weights(model_spec, checkpoint, num_segments=num_segments, trust=trust,
                                        input_size=input_size or 224)


def failed_output(out: Path) -> Path:
    """Where a model that failed its parity check is kept for inspection: never under the name a
    deployment would pick up."""
    return out.with_name(out.with_suffix("").name + ".parity-failed.onnx")


def export_checkpoint(checkpoint: str | Path, output: str | Path | None = None, *, arch: str | None = None,
                      num_segments: int | None = None, num_classes: int | None = None,
                      input_size: int | None = None, options: ExportOptions | None = None,
                      model_spec: str | None = None, trust_checkpoint: bool = False,
                      verify: bool = True, stage: Callable[[str], None] | None = None) -> ExportRun:
    """Export ``checkpoint`` to ``output`` (default ``<checkpoint stem>.onnx``) and check parity.

    The model reaches its name only after parity passed (or with ``verify=False``): until then it is a
    temp file beside it, removed on an interrupt; a model that fails parity is kept as
    ``<stem>.parity-failed.onnx``. ``stage`` is told the name of each step as it starts (for progress)."""
    stage = stage or (lambda name: None)
    checkpoint = Path(checkpoint)
    options = options or ExportOptions()
    out = Path(output) if output is not None else default_output(checkpoint)
    if out.suffix.lower() != ".onnx":
        raise ExportError(f"`output` {out} must name an .onnx file")
    sources = [checkpoint, *([parse_model_spec(model_spec)[0]] if model_spec else [])]
    check_writable(out, inputs=sources)
    stage("loading the checkpoint")
    model, cfg, layout, sha, warnings = _load(checkpoint, arch, num_segments, num_classes, input_size,
                                              model_spec, trust_checkpoint)
    cfg = _apply_input_size(cfg, input_size)
    with staged_output(out) as staged:
        stage("exporting to ONNX (tracing, graph passes, checks)")
        result = export_model(model, cfg, staged.path, checkpoint_sha256=sha, options=options,
                              write=lambda path, data: path.write_bytes(data))
        parity = None
        if verify:
            stage("checking parity on ONNX Runtime (batch 1 and 3)")
            parity = check_export_parity(staged.path, model, cfg, result.export_config)
        result.path = staged.commit(out if parity is None or parity.passed else failed_output(out))
    return ExportRun(export=result, parity=parity, layout=layout, warnings=warnings)
