"""``tamdeploy export``: checkpoint (or user network + checkpoint) -> ONNX, then the parity check."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from torch import nn

from tamdeploy.errors import ExportError
from tamdeploy.exporters.onnx_export import ExportOptions, ExportResult, export_model
from tamdeploy.exporters.parity import ParityResult, check_export_parity
from tamdeploy.files import check_writable
from tamdeploy.models.config import ModelConfig
from tamdeploy.models.registry import MIN_INPUT_SIZE


@dataclass
class ExportRun:
    export: ExportResult
    parity: ParityResult | None
    layout: str
    warnings: list[str]


def default_output(checkpoint: Path) -> Path:
    return checkpoint.with_suffix(".onnx")


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


def export_checkpoint(checkpoint: str | Path, output: str | Path | None = None, *, arch: str | None = None,
                      num_segments: int | None = None, num_classes: int | None = None,
                      input_size: int | None = None, options: ExportOptions | None = None,
                      model_spec: str | None = None, trust_checkpoint: bool = False,
                      verify: bool = True) -> ExportRun:
    checkpoint = Path(checkpoint)
    options = options or ExportOptions()
    out = Path(output) if output is not None else default_output(checkpoint)
    check_writable(out)
    model, cfg, layout, sha, warnings = _load(checkpoint, arch, num_segments, num_classes, input_size,
                                              model_spec, trust_checkpoint)
    cfg = _apply_input_size(cfg, input_size)
    result = export_model(model, cfg, out, checkpoint_sha256=sha, options=options)
    parity = check_export_parity(result.path, model, cfg, result.export_config) if verify else None
    return ExportRun(export=result, parity=parity, layout=layout, warnings=warnings)
