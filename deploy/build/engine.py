"""TensorRT engines from tamdeploy's ONNX models: ``build_engine`` and the engine's sidecar.

The precision lives in the ONNX graph (FP16 tensors, INT8 Q/DQ), so the network is strongly typed
and the builder gets no precision flag: ``NetworkDefinitionCreationFlag.STRONGLY_TYPED`` on
TensorRT 10.x (on 11.x every network is strongly typed and the flag is accepted and ignored); no
``BuilderFlag.FP16``/``INT8`` (removed in 11.x), no calibrator (removed in 11.x).

A build writes, each atomically (temp file + rename), beside ``out_path`` (``model.plan``):

- ``model.plan``: the serialized engine;
- ``model.plan.json``: the sidecar, what the engine needs and was built from: TensorRT version, GPU
  name and compute capability, precision, the optimization profile, the ONNX file's sha256, how TAM
  ran (``tam_op``), the model config from the ONNX metadata, and the plan's own size and sha256. The
  TensorRT runner refuses an engine whose sidecar names another TensorRT version or GPU
  (``check_sidecar``), or describes another plan (``check_plan``): the two files are renamed one
  after the other, and a build interrupted between the renames leaves a new plan beside the old
  sidecar;
- ``model.layers.json``: the engine inspector's per-layer report (``ProfilingVerbosity.DETAILED``);
- the timing cache, when one is given: loaded before the build when it exists, saved after.

Batch profile: one optimization profile over the first ONNX input, [N, T, 3, S, S] (video) or
[N, 3, S, S] (image), N going from min through opt to max. ``batch=None`` takes ``DEFAULT_BATCH``
= (1, 1, 16): opt 1 tunes for single-clip latency, max 16 covers the bench's default batches
(1, 4, 16); a model exported with a fixed batch b gets (b, b, b). Dimensions other than the batch
must be static (in the graph, or from the tamdeploy metadata when the graph leaves them symbolic).

TAM (``tam_op`` in the result and sidecar): with ``use_plugin`` and ``tensorrt.plugin`` present,
the ``tamdeploy::TAMAggregate`` plugin is registered before parsing and the parser maps each
TAMAggregate node to it: ``plugin-aot`` (TensorRT >= 10.9: the Triton kernel's PTX is inside the
engine, no Python needed to run it) or ``plugin-jit`` (the kernel is launched from Python; the
runner registers the plugin before loading). ``use_plugin=False`` (or no ``tensorrt.plugin``) parses
the graph with every TAMAggregate node inlined as its ONNX function: ``onnx-function``. A graph
without TAMAggregate nodes (TSN, SE, or exported with ``--tam-op onnx``) reports ``none``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tamdeploy import __version__
from tamdeploy.deploy.build.graph import graph_precision, load_onnx
from tamdeploy.deploy.runners.trt import (
    SIDECAR_FORMAT,
    SIDECAR_VERSION,
    gpu_identity,
    import_tensorrt_with_cuda,
    make_logger,
    plan_record,
    sidecar_path,
)
from tamdeploy.errors import TamdeployError
from tamdeploy.files import sha256_file, write_bytes_atomic
from tamdeploy.plugins.contract import tam_nodes as find_tam_nodes

DEFAULT_BATCH = (1, 1, 16)
TAM_MODES = ("plugin-aot", "plugin-jit", "onnx-function", "none")
MAX_OPT_LEVEL = 5


class EngineBuildError(TamdeployError):
    """An engine that cannot be built from the given model or options."""


# --- batch profile ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchProfile:
    """The optimization profile of the model's input: shapes at min, opt and max batch."""

    input_name: str
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

    @property
    def batch(self) -> tuple[int, int, int]:
        return self.min[0], self.opt[0], self.max[0]

    def to_dict(self) -> dict:
        return {"input": self.input_name, "min": list(self.min), "opt": list(self.opt), "max": list(self.max)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> BatchProfile:
        return cls(d["input"], tuple(d["min"]), tuple(d["opt"]), tuple(d["max"]))


def parse_batch_range(text: str) -> tuple[int, int, int]:
    """``"B"`` -> (B, B, B); ``"MIN,MAX"`` -> (MIN, MIN, MAX); ``"MIN,OPT,MAX"``; validated."""
    parts = [p.strip() for p in text.split(",")]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise TamdeployError(f"batch range {text!r} must be B, MIN,MAX or MIN,OPT,MAX (integers)") from None
    if len(values) == 1:
        values = values * 3
    elif len(values) == 2:
        values = [values[0], values[0], values[1]]
    elif len(values) != 3:
        raise TamdeployError(f"batch range {text!r} must be B, MIN,MAX or MIN,OPT,MAX (integers)")
    return check_batch_range(tuple(values))


def check_batch_range(batch: Sequence[int]) -> tuple[int, int, int]:
    """(min, opt, max) with 1 <= min <= opt <= max, or TamdeployError saying what is wrong."""
    if len(batch) != 3 or not all(isinstance(b, int) and not isinstance(b, bool) for b in batch):
        raise TamdeployError(f"batch must be three integers (min, opt, max), got {tuple(batch)}")
    lo, opt, hi = batch
    if lo < 1:
        raise TamdeployError(f"the smallest batch must be >= 1, got {lo}")
    if not lo <= opt <= hi:
        raise TamdeployError(f"batch range must satisfy min <= opt <= max, got min={lo} opt={opt} max={hi}")
    return lo, opt, hi


def resolve_profile(input_name: str, dims: Sequence[int | str | None], batch: Sequence[int] | None,
                    fallback_shape: Sequence[int] | None = None) -> BatchProfile:
    """The profile for an input of ONNX ``dims`` (ints, or names / None where symbolic).

    The batch axis (0) follows ``batch`` (default ``DEFAULT_BATCH``; a static batch b allows only
    (b, b, b)); the other axes must be static, or come from ``fallback_shape`` (the metadata's
    per-clip input shape, [T, 3, S, S] or [3, S, S])."""
    if len(dims) < 2:
        raise TamdeployError(f"input '{input_name}' has shape {list(dims)}: expected [N, ...] with a batch axis")
    rest = list(dims[1:])
    if fallback_shape is not None and len(fallback_shape) == len(rest):
        for i, (d, f) in enumerate(zip(rest, fallback_shape, strict=True)):
            if not isinstance(d, int):
                rest[i] = int(f)
            elif d != f:
                raise TamdeployError(f"input '{input_name}' has shape {list(dims)}, but the model's metadata says "
                                     f"[N, {', '.join(map(str, fallback_shape))}]: re-export the model")
    unknown = [i + 1 for i, d in enumerate(rest) if not isinstance(d, int) or d < 1]
    if unknown:
        raise TamdeployError(f"input '{input_name}' has dynamic dimension(s) {unknown} in {list(dims)}: only the "
                             f"batch may be dynamic for 'build' (export with a fixed clip shape)")
    static_batch = dims[0] if isinstance(dims[0], int) and dims[0] > 0 else None
    if batch is None:
        batch = (static_batch,) * 3 if static_batch is not None else DEFAULT_BATCH
    lo, opt, hi = check_batch_range(tuple(batch))
    if static_batch is not None and (lo, opt, hi) != (static_batch,) * 3:
        raise TamdeployError(f"input '{input_name}' has a fixed batch of {static_batch}; the batch range must be "
                             f"{static_batch} (got {lo},{opt},{hi}): export with a dynamic batch for a range")
    shape = tuple(rest)
    return BatchProfile(input_name, (lo, *shape), (opt, *shape), (hi, *shape))


# --- the ONNX side ----------------------------------------------------------------------------------


def onnx_input_dims(model: Any) -> tuple[str, list[int | str | None]]:
    """Name and dims (int, symbolic name, or None) of the model's first real input."""
    initializers = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if not inputs:
        raise TamdeployError("the ONNX model has no input")
    first = inputs[0]
    dims: list[int | str | None] = []
    for d in first.type.tensor_type.shape.dim:
        if d.HasField("dim_value"):
            dims.append(int(d.dim_value))
        else:
            dims.append(d.dim_param or None)
    return first.name, dims


# --- sidecar and builder helpers ---------------------------------------------------------------------


def layers_path(engine_path: str | Path) -> Path:
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.stem + ".layers.json")


def creation_flag(trt: Any, name: str) -> int:
    """The network creation flag bit ``name``, 0 where this TensorRT lacks it (EXPLICIT_BATCH is gone
    in 11.x; the Python-plugin preferences appeared in 10.9)."""
    flag = getattr(trt.NetworkDefinitionCreationFlag, name, None)
    return 0 if flag is None else 1 << int(flag)


def _progress_monitor(trt: Any, bar: Any) -> Any:
    class Monitor(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self.tasks: dict[str, Any] = {}

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            self.tasks[phase_name] = bar.add_task(phase_name, total=num_steps)

        def step_complete(self, phase_name: str, step: int) -> bool:
            if phase_name in self.tasks:
                bar.update(self.tasks[phase_name], completed=step + 1)
            return True

        def phase_finish(self, phase_name: str) -> None:
            task = self.tasks.pop(phase_name, None)
            if task is not None:
                bar.remove_task(task)

    return Monitor()


def parser_errors(parser: Any) -> list[str]:
    """One line per ONNX parser error: node, operator, description."""
    lines = []
    for i in range(parser.num_errors):
        err = parser.get_error(i)
        where = []
        name, op = _call(err, "node_name"), _call(err, "node_operator")
        if name or op:
            where.append(f"node {name or '?'} ({op or '?'})")
        elif _call(err, "node") not in (None, -1):
            where.append(f"node #{err.node()}")
        lines.append(f"{', '.join(where) + ': ' if where else ''}{err.desc()}")
    return lines


def _call(obj: Any, method: str) -> Any:
    fn = getattr(obj, method, None)
    try:
        return fn() if fn is not None else None
    except Exception:  # the parser error's accessors vary between TensorRT versions
        return None


# --- the build ----------------------------------------------------------------------------------------


@dataclass
class EngineBuildResult:
    engine_path: Path
    sidecar_path: Path
    layers_path: Path
    onnx_path: Path
    onnx_sha256: str
    precision: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    profile: BatchProfile
    tam_op: str  # one of TAM_MODES
    tam_nodes: int
    plugin_layers: int
    engine_bytes: int
    engine_sha256: str
    num_layers: int
    build_seconds: float
    workspace_gb: float | None
    opt_level: int | None
    timing_cache: Path | None
    timing_cache_loaded: bool
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = asdict(self)
        for key in ("engine_path", "sidecar_path", "layers_path", "onnx_path", "timing_cache"):
            d[key] = None if d[key] is None else str(d[key])
        d["profile"] = self.profile.to_dict()
        d["build_seconds"] = round(self.build_seconds, 3)
        return d


def _check_options(workspace_gb: float | None, opt_level: int | None) -> None:
    if workspace_gb is not None and not workspace_gb > 0:
        raise TamdeployError(f"workspace must be > 0 GiB, got {workspace_gb}")
    if opt_level is not None and not (isinstance(opt_level, int) and 0 <= opt_level <= MAX_OPT_LEVEL):
        raise TamdeployError(f"the builder optimization level must be 0..{MAX_OPT_LEVEL}, got {opt_level}")


def _check_writable_dir(path: Path, what: str) -> None:
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise TamdeployError(f"cannot write the {what} {path}: directory {directory} does not exist")


def _attach_timing_cache(trt: Any, config: Any, path: Path | None, warnings: list[str]) -> bool:
    """Give the build a timing cache (from ``path`` when it exists); whether one was loaded.

    A cache TensorRT cannot read, or one from another TensorRT version or GPU, is replaced by an
    empty one (with a warning); the build then overwrites the file with its own cache."""
    if path is not None and path.is_file():
        data = path.read_bytes()
        try:
            cache = config.create_timing_cache(data)
            if cache is not None and config.set_timing_cache(cache, False):
                return True
        except Exception:  # TensorRT raises on a malformed cache blob
            pass
        warnings.append(f"timing cache {path} is unreadable or from another TensorRT version or GPU; "
                        f"building with a new one, which replaces it")
    if not config.set_timing_cache(config.create_timing_cache(b""), False):
        raise EngineBuildError(f"TensorRT {trt.__version__} refused an empty timing cache")
    return False


def _plugin_kind(trt: Any, layer: Any, preferred: str) -> str:
    """'aot' or 'jit' for a plugin layer: the Python plugin object's class tells where it is visible,
    else the implementation the network asked for (the plugin creator follows that request)."""
    if hasattr(trt, "IPluginV3Layer"):
        layer.__class__ = trt.IPluginV3Layer  # get_layer() returns an ILayer (as Polygraphy downcasts)
    try:
        plugin = layer.plugin
    except Exception:  # no plugin accessor on this TensorRT
        plugin = None
    name = type(plugin).__name__ if plugin is not None else ""
    if "AOT" in name:
        return "aot"
    if "JIT" in name:
        return "jit"
    return preferred


def build_engine(onnx_path: Path, out_path: Path, *, batch: tuple[int, int, int] | None, workspace_gb: float | None,
                 opt_level: int | None, timing_cache: Path | None, use_plugin: bool = True,
                 progress: bool = True) -> EngineBuildResult:
    """Build ``out_path`` (``model.plan``) from ``onnx_path``, with its sidecar and layer report.

    ``batch``: (min, opt, max) of the profile (None: ``DEFAULT_BATCH``, see the module doc);
    ``workspace_gb``: the workspace memory pool limit (None: TensorRT's default, the GPU's memory);
    ``opt_level``: the builder optimization level 0-5 (None: TensorRT's default, 3);
    ``timing_cache``: reused when it exists, written (atomically) after the build;
    ``use_plugin``: TAMAggregate through the TensorRT plugin (else its ONNX function body).
    Raises ``BackendUnavailableError`` without TensorRT or a CUDA GPU."""
    onnx_path, out_path = Path(onnx_path), Path(out_path)
    timing_cache = Path(timing_cache) if timing_cache is not None else None
    trt = import_tensorrt_with_cuda(build=True)
    _check_options(workspace_gb, opt_level)
    if out_path.resolve() == onnx_path.resolve():
        raise TamdeployError(f"the engine would overwrite its own ONNX model {onnx_path}")
    _check_writable_dir(out_path, "engine")
    if timing_cache is not None:
        _check_writable_dir(timing_cache, "timing cache")

    from tamdeploy.console import progress_bar
    from tamdeploy.exporters.metadata import read_metadata

    model = load_onnx(onnx_path, load_weights=False)
    meta = read_metadata(model)
    input_name, dims = onnx_input_dims(model)
    profile = resolve_profile(input_name, dims, batch, fallback_shape=meta.config.input_shape if meta else None)
    tam_nodes = len(find_tam_nodes(model))
    precision = graph_precision(model)  # the graph's types, not the metadata: converters may not update it
    warnings: list[str] = []
    started = time.perf_counter()

    support = None
    if use_plugin and tam_nodes:
        from tamdeploy.plugins.trt_plugin import register_tam_plugin

        try:
            support = register_tam_plugin()
        except ImportError:
            warnings.append(f"TensorRT {trt.__version__} has no tensorrt.plugin (needs >= 10.7): TAM runs as its ONNX "
                            f"function")

    logger = make_logger(trt)
    builder = trt.Builder(logger)
    flags = creation_flag(trt, "STRONGLY_TYPED")
    if support is not None and support.aot:
        flags |= creation_flag(trt, "PREFER_AOT_PYTHON_PLUGINS")
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if tam_nodes and support is None:
        from tamdeploy.plugins.tam_onnx import inline_tam_functions

        inlined = inline_tam_functions(load_onnx(onnx_path))
        parsed = parser.parse(inlined.SerializeToString(), str(onnx_path))
    else:
        parsed = parser.parse_from_file(str(onnx_path))
    if not parsed:
        errors = parser_errors(parser) or logger.errors or ["no details"]
        raise EngineBuildError(f"TensorRT {trt.__version__}'s ONNX parser rejected {onnx_path.name}: "
                               + "; ".join(errors))

    plugin_layers = [network.get_layer(i) for i in range(network.num_layers)
                     if network.get_layer(i).type == trt.LayerType.PLUGIN_V3]
    if not tam_nodes:
        tam_op = "none"
    elif support is None or not plugin_layers:
        tam_op = "onnx-function"
        if support is not None:
            warnings.append(f"TensorRT {trt.__version__}'s parser imported TAMAggregate as its ONNX function although "
                            f"the plugin is registered")
    else:
        tam_op = "plugin-" + _plugin_kind(trt, plugin_layers[0], support.preferred)
        if len(plugin_layers) != tam_nodes:
            warnings.append(f"{len(plugin_layers)} of {tam_nodes} TAMAggregate nodes became plugin layers")

    config = builder.create_builder_config()
    if workspace_gb is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    if opt_level is not None:
        config.builder_optimization_level = opt_level
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    opt_profile = builder.create_optimization_profile()
    opt_profile.set_shape(profile.input_name, profile.min, profile.opt, profile.max)
    config.add_optimization_profile(opt_profile)
    cache_loaded = _attach_timing_cache(trt, config, timing_cache, warnings)

    with progress_bar(progress) as bar:
        monitor = _progress_monitor(trt, bar) if progress and hasattr(trt, "IProgressMonitor") else None
        if monitor is not None:  # kept referenced here: TensorRT calls it until the build ends
            config.progress_monitor = monitor
        serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError(f"TensorRT {trt.__version__} could not build {onnx_path.name}: "
                               + "; ".join(logger.errors or ["no details (run with TensorRT's verbose log)"]))
    plan = bytes(memoryview(serialized))
    plan_info = plan_record(plan)

    runtime = trt.Runtime(logger)
    engine = runtime.deserialize_cuda_engine(plan)
    if engine is None:
        raise EngineBuildError(f"TensorRT could not load the engine it just built: {'; '.join(logger.errors)}")
    inspector = engine.create_engine_inspector()
    layer_info = inspector.get_engine_information(trt.LayerInformationFormat.JSON)
    outputs = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)
               if engine.get_tensor_mode(engine.get_tensor_name(i)) == trt.TensorIOMode.OUTPUT]
    num_layers = engine.num_layers
    build_seconds = time.perf_counter() - started

    gpu_name, capability = gpu_identity()
    onnx_sha = sha256_file(onnx_path)
    if timing_cache is not None:
        write_bytes_atomic(timing_cache, bytes(memoryview(config.get_timing_cache().serialize())))
    result = EngineBuildResult(
        engine_path=out_path, sidecar_path=sidecar_path(out_path), layers_path=layers_path(out_path),
        onnx_path=onnx_path, onnx_sha256=onnx_sha, precision=precision, tensorrt_version=trt.__version__,
        gpu_name=gpu_name, compute_capability=capability, profile=profile, tam_op=tam_op, tam_nodes=tam_nodes,
        plugin_layers=len(plugin_layers), engine_bytes=plan_info["bytes"], engine_sha256=plan_info["sha256"],
        num_layers=num_layers, build_seconds=build_seconds, workspace_gb=workspace_gb, opt_level=opt_level,
        timing_cache=timing_cache, timing_cache_loaded=cache_loaded, warnings=warnings + logger.warnings[:20],
    )
    try:
        layers: Any = json.loads(layer_info)
    except ValueError:
        layers = layer_info
    write_bytes_atomic(result.layers_path, json.dumps(
        {"engine": out_path.name, "tensorrt_version": trt.__version__, "layers": layers}, indent=2).encode())
    # two renames, not one: the sidecar's record of the plan (size, sha256) lets the runner refuse the
    # pair an interrupt between them leaves (check_plan)
    write_bytes_atomic(out_path, plan)
    sidecar = make_sidecar(result, outputs=outputs, meta=meta, plugin=support.to_dict() if support else None)
    write_bytes_atomic(result.sidecar_path, json.dumps(sidecar, indent=2).encode())
    return result


def make_sidecar(result: EngineBuildResult, *, outputs: Sequence[str], meta: Any = None,
                 plugin: Mapping[str, Any] | None = None) -> dict:
    """The sidecar of a built engine (see the module doc); ``meta``: the ONNX model's tamdeploy metadata."""
    return {
        "format": SIDECAR_FORMAT,
        "format_version": SIDECAR_VERSION,
        "tamdeploy_version": __version__,
        "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "tensorrt_version": result.tensorrt_version,
        "gpu": {"name": result.gpu_name, "compute_capability": result.compute_capability},
        "precision": result.precision,
        "profiles": [result.profile.to_dict()],
        "outputs": list(outputs),
        "onnx": {"path": str(result.onnx_path), "sha256": result.onnx_sha256},
        "engine": {"bytes": result.engine_bytes, "sha256": result.engine_sha256},
        "tam_op": result.tam_op,
        "tam_nodes": result.tam_nodes,
        "plugin": dict(plugin) if plugin else None,
        "input_layout": meta.input_layout if meta is not None else None,
        "config": meta.config.to_dict() if meta is not None else None,
        "build": {"seconds": round(result.build_seconds, 3), "workspace_gb": result.workspace_gb,
                  "opt_level": result.opt_level, "engine_bytes": result.engine_bytes, "num_layers": result.num_layers},
    }
