"""``tamdeploy build``: an FP32 ONNX model to an FP16 or INT8 graph (target onnxruntime), and on to a
TensorRT engine (target tensorrt: the precision graph first, then ``deploy.build.engine.build_engine``)
or an OpenVINO IR (target openvino: FP32, BF16 and FP16 from the FP32 graph with the precision as a
hint, INT8 from the Q/DQ graph; ``deploy.build.openvino.build_ir``).

Precision lives in the graph (DESIGN.md): the same ``model.fp16.onnx`` / ``model.int8.onnx`` runs on
ONNX Runtime on any CPU and is what TensorRT (strongly typed) builds from.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from tamdeploy.console import warn
from tamdeploy.deploy.build.calibration import load_calibration
from tamdeploy.deploy.build.fp16 import convert_fp16
from tamdeploy.deploy.build.graph import PrecisionError, load_onnx, require_fp32
from tamdeploy.deploy.build.int8 import LayerError, build_int8
from tamdeploy.deploy.build.openvino import build_ir, check_ir_output
from tamdeploy.deploy.runners.openvino_ir import import_openvino
from tamdeploy.deploy.runners.trt import BUILD_INSTALL_HINT
from tamdeploy.errors import BackendUnavailableError, TamdeployError
from tamdeploy.exporters.metadata import read_metadata
from tamdeploy.files import check_writable, sha256_file, write_bytes_atomic

TARGETS = ("onnxruntime", "tensorrt", "openvino")
PRECISIONS = {"onnxruntime": ("fp16", "int8"), "tensorrt": (None, "fp16", "int8"),
              "openvino": (None, "bf16", "fp16", "int8")}
SUFFIXES = {"onnxruntime": ".onnx", "tensorrt": ".plan", "openvino": ".xml"}  # the default output's
OUTPUT_SUFFIXES = {"onnxruntime": (".onnx",), "tensorrt": (".plan", ".engine"), "openvino": (".xml",)}


@dataclass(frozen=True)
class EngineOptions:
    """Passed through to ``deploy.build.engine.build_engine`` for ``--target tensorrt``."""

    batch: tuple[int, int, int] | None = None
    workspace_gb: float | None = None
    opt_level: int | None = None
    timing_cache: Path | None = None
    use_plugin: bool = True


@dataclass(frozen=True)
class BuildOptions:
    precision: str | None  # "fp16" | "int8" | "bf16" (OpenVINO) | None (TensorRT, OpenVINO: FP32)
    target: str = "onnxruntime"
    output: Path | None = None
    calib: str | Path | None = None  # a path or "random"
    calib_samples: int | None = None  # None: up to DEFAULT_SAMPLES, as many as the data has
    calib_method: str = "minmax"
    sensitivity: bool = False
    engine: EngineOptions = field(default_factory=EngineOptions)


@dataclass
class BuildReport:
    input: Path
    precision: str
    target: str
    onnx_output: Path  # the precision graph (the input itself for an FP32 engine)
    input_size_bytes: int
    size_bytes: int
    sha256: str
    seconds: float
    details: dict
    calibration: dict | None = None
    engine: dict | None = None
    openvino: dict | None = None

    def to_dict(self) -> dict:
        return {"input": str(self.input), "precision": self.precision, "target": self.target,
                "onnx": str(self.onnx_output), "input_size_bytes": self.input_size_bytes,
                "size_bytes": self.size_bytes, "size_ratio": round(self.size_bytes / self.input_size_bytes, 4),
                "sha256": self.sha256,
                "seconds": round(self.seconds, 3), self.precision: self.details, "calibration": self.calibration,
                "engine": self.engine, "openvino": self.openvino}


def default_output(model_path: Path, precision: str | None, target: str) -> Path:
    """``model.fp16.onnx`` / ``model.int8.onnx`` beside the input; engines ``model[.fp16|.int8].plan``;
    OpenVINO IRs ``model[.bf16|.fp16|.int8].xml``."""
    stem = model_path.with_suffix("").name
    tag = f".{precision}" if precision else ""
    return model_path.with_name(f"{stem}{tag}{SUFFIXES[target]}")


def _graph_path(model_path: Path, output: Path, options: BuildOptions) -> Path:
    """Where the precision graph goes: the output itself for ONNX Runtime; for an engine or IR, beside the
    output when -o names one (``e.plan`` -> ``e.onnx``), else ``model.int8.onnx`` beside the input, which
    the ONNX Runtime target would write too. OpenVINO's INT8 graph is its own (``int8.quantize_tam_tensors``):
    ``.openvino.onnx``, so that it never replaces the other."""
    if options.target == "onnxruntime":
        return output
    graph = output.with_suffix(".onnx") if options.output is not None else default_output(
        model_path, options.precision, "onnxruntime")
    return graph.with_name(f"{graph.stem}.openvino.onnx") if options.target == "openvino" else graph


def _engine_builder() -> Callable[..., object]:
    """``deploy.build.engine.build_engine``, or the one-line error when TensorRT cannot be used here."""
    from tamdeploy.deploy.build.engine import build_engine

    if importlib.util.find_spec("tensorrt") is None:
        raise BackendUnavailableError(BUILD_INSTALL_HINT)
    return build_engine


def _check(model_path: Path, options: BuildOptions) -> None:
    if options.target not in TARGETS:
        raise TamdeployError(f"`target` must be one of {', '.join(TARGETS)}, got {options.target!r}")
    if options.precision not in (None, "fp16", "int8", "bf16"):
        raise TamdeployError(f"`precision` must be fp16, bf16 or int8, got {options.precision!r}")
    if options.precision == "bf16" and options.target != "openvino":
        raise TamdeployError("`precision=bf16` is for `target=openvino` (an inference precision of OpenVINO's CPU "
                             "plugin); ONNX Runtime and TensorRT builds take `precision=fp16` or `precision=int8`")
    if options.precision is None and options.target == "onnxruntime":
        raise TamdeployError("nothing to build: give `precision=fp16` or `precision=int8` (an FP32 model runs on "
                             "ONNX Runtime as it is), or `target=tensorrt` for an engine")
    if options.precision != "int8" and (options.calib is not None or options.sensitivity):
        raise TamdeployError("`calib` and `sensitivity` are for `precision=int8`")
    if model_path.suffix.lower() != ".onnx":
        raise TamdeployError(f"{model_path} is not an .onnx file; build takes the model 'tamdeploy export' wrote")
    engine_only = [name for name, given in (
        ("`batch`", options.engine.batch is not None), ("`workspace_gb`", options.engine.workspace_gb is not None),
        ("`opt_level`", options.engine.opt_level is not None),
        ("`timing_cache`", options.engine.timing_cache is not None), ("`no_plugin`", not options.engine.use_plugin),
    ) if given]
    if engine_only and options.target != "tensorrt":
        raise TamdeployError(f"{', '.join(engine_only)} are TensorRT builder options: add `target=tensorrt`, or drop "
                             f"them (target {options.target} would ignore them)")
    if options.output is not None:
        suffix = Path(options.output).suffix
        allowed = OUTPUT_SUFFIXES[options.target]
        if suffix.lower() not in allowed or (options.target == "openvino" and suffix != ".xml"):
            raise TamdeployError(f"-o {options.output}: target {options.target} writes {' or '.join(allowed)} "
                                 f"(got {suffix or 'no suffix'})")


def build(model_path: str | Path, options: BuildOptions, *, progress: bool = True,
          on_sensitivity: Callable[[list[LayerError], list[str]], None] | None = None) -> BuildReport:
    model_path = Path(model_path)
    _check(model_path, options)
    builder = _engine_builder() if options.target == "tensorrt" else None  # fail fast, before calibrating
    if options.target == "openvino":
        import_openvino()
    started = time.perf_counter()
    output = Path(options.output) if options.output is not None else default_output(
        model_path, options.precision, options.target)
    if options.target == "openvino":
        check_ir_output(output, inputs=[model_path])
    else:
        check_writable(output, inputs=[model_path])
    model = load_onnx(model_path)
    require_fp32(model, model_path)

    calibration = None
    if options.precision is None or (options.target == "openvino" and options.precision != "int8"):
        graph_path, details, size = model_path, {}, model_path.stat().st_size
    else:
        graph_path = _graph_path(model_path, output, options)
        if graph_path.resolve() == model_path.resolve():
            raise TamdeployError(f"the output {graph_path} would overwrite the input model; choose another -o")
        if options.precision == "fp16":
            result = convert_fp16(model)
            converted, details = result.model, result.to_dict()
        else:
            data = load_calibration(options.calib, model, options.calib_samples, progress)
            calibration = data.to_dict()
            int8 = build_int8(model, data.array, method=options.calib_method, sensitivity=options.sensitivity,
                              progress=progress, on_sensitivity=on_sensitivity,
                              tam_tensors=options.target == "openvino")
            converted, details = int8.model, int8.to_dict()
        size = _write(converted, graph_path)

    engine = None
    if builder is not None:
        eo = options.engine
        result = builder(graph_path, output, batch=eo.batch, workspace_gb=eo.workspace_gb, opt_level=eo.opt_level,
                         timing_cache=eo.timing_cache, use_plugin=eo.use_plugin, progress=progress)
        engine = result.to_dict()
    ir = None
    if options.target == "openvino":
        try:
            result = build_ir(graph_path, output, precision=options.precision or "fp32", meta=read_metadata(model),
                              calibration=calibration)
        except BaseException:  # the INT8 graph was written for this IR alone: no IR, no graph
            if graph_path != model_path:
                graph_path.unlink(missing_ok=True)
            raise
        for warning in result.warnings:
            warn(warning)
        ir, size = result.to_dict(), result.xml_bytes + result.bin_bytes
    return BuildReport(input=model_path, precision=options.precision or "fp32", target=options.target,
                       onnx_output=graph_path, input_size_bytes=model_path.stat().st_size, size_bytes=size,
                       sha256=sha256_file(graph_path),
                       seconds=time.perf_counter() - started, details=details, calibration=calibration,
                       engine=engine, openvino=ir)


def _write(model: onnx.ModelProto, path: Path) -> int:
    data = model.SerializeToString(deterministic=True)
    if len(data) >= 2**31:
        raise PrecisionError(f"the graph is {len(data) / 2**30:.1f} GiB; ONNX files hold at most 2 GiB inline")
    write_bytes_atomic(path, data)
    return len(data)
