"""PyTorch -> ONNX: rewrites on, dynamo export with a dynamic batch, graph passes, atomic write."""

from __future__ import annotations

import contextlib
import io
import logging
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import onnx
import torch
from torch import nn

from tamdeploy.errors import ExportError
from tamdeploy.exporters.configs import ExportConfig, export_config_for
from tamdeploy.exporters.metadata import ModelMetadata, write_metadata
from tamdeploy.exporters.passes import finalize_graph
from tamdeploy.exporters.rewrites import export_rewrites
from tamdeploy.files import sha256_file, write_bytes_atomic
from tamdeploy.models.config import ModelConfig

TAM_OP_MODES = ("plugin", "onnx")
MIN_OPSET = 18


@dataclass(frozen=True)
class ExportOptions:
    opset: int = MIN_OPSET
    tam_op: str = "plugin"  # "plugin": custom node + local function; "onnx": function body inlined
    simplify: bool = True

    def __post_init__(self) -> None:
        if self.tam_op not in TAM_OP_MODES:
            raise ExportError(f"`tam_op` must be one of {TAM_OP_MODES}, got {self.tam_op!r}")
        import onnx

        newest = onnx.defs.onnx_opset_version()  # the exporter cannot write past the onnx it runs with
        if not MIN_OPSET <= self.opset <= newest:
            raise ExportError(f"`opset` must be {MIN_OPSET}-{newest} (onnx {onnx.__version__}), got {self.opset}")


@dataclass
class ExportResult:
    path: Path
    config: ModelConfig
    export_config: ExportConfig
    rewrites: list[tuple[str, str]]
    seconds: float
    nodes: int
    custom_nodes: int
    size_bytes: int
    sha256: str
    notes: list[str] = field(default_factory=list)


@contextlib.contextmanager
def quiet_exporter() -> Iterator[None]:
    """The exporter logs warnings (e.g. torchvision ops it skips) and prints progress; keep the
    terminal for our own output (stdout may be JSON)."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _trace(model: nn.Module, example: torch.Tensor, ecfg: ExportConfig, options: ExportOptions,
           ) -> tuple[onnx.ModelProto, list[tuple[str, str]]]:
    from tamdeploy.plugins.tam_onnx import tam_translation_table

    batch = torch.export.Dim("batch", min=1, max=65536)
    with export_rewrites(model) as applied, quiet_exporter():
        try:
            program = torch.onnx.export(
                model, (example,), dynamo=True, input_names=[ecfg.input_name],
                output_names=[ecfg.output_name], dynamic_shapes=({0: batch},),
                opset_version=options.opset, custom_translation_table=tam_translation_table(),
                optimize=True, verify=False, report=False,
            )
        except Exception as e:  # the exporter raises many types; the user needs the first line
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ExportError(f"torch.onnx.export failed: {first}") from e
    return program.model_proto, applied


def export_model(model: nn.Module, config: ModelConfig, out_path: str | Path, checkpoint_sha256: str,
                 options: ExportOptions | None = None,
                 write: Callable[[Path, bytes], object] = write_bytes_atomic) -> ExportResult:
    """Export ``model`` (eval mode) to ``out_path``; the batch axis stays dynamic. ``write`` puts the bytes
    there (default: atomically; a caller that already writes into a temp file of its own writes plainly)."""
    options = options or ExportOptions()
    ecfg = export_config_for(config)
    model.eval()
    started = time.perf_counter()
    # batch 2, not 1: torch.export specialises a dimension that is 1 in the example
    example = ecfg.random_input(config, batch=2)
    with torch.no_grad():
        proto, applied = _trace(model, example, ecfg, options)
    uses_op = any(name in ("tam", "action") for _, name in applied)
    proto = finalize_graph(proto, inline_tam=options.tam_op == "onnx", simplify_graph=options.simplify)
    tam_mode = options.tam_op if uses_op else "none"
    write_metadata(proto, ModelMetadata(config=config, input_name=ecfg.input_name, input_layout=ecfg.layout,
                                        precision="fp32", checkpoint_sha256=checkpoint_sha256,
                                        tam_op=tam_mode))
    onnx.checker.check_model(proto, full_check=True)
    data = proto.SerializeToString(deterministic=True)
    path = Path(out_path)
    write(path, data)
    custom = sum(1 for n in proto.graph.node if n.domain not in ("", "ai.onnx"))
    return ExportResult(
        path=path, config=config, export_config=ecfg, rewrites=applied,
        seconds=time.perf_counter() - started, nodes=len(proto.graph.node), custom_nodes=custom,
        size_bytes=len(data), sha256=sha256_file(path),
    )
