"""OpenVINO on the CPU: an IR that ``tamdeploy build --target openvino`` wrote, or any tamdeploy ONNX file
read as it is (TAMAggregate is converted while reading, see ``plugins.tam_openvino``).

- ``precision`` is OpenVINO's inference precision for the float parts of the graph: fp32, bf16 or fp16
  (None: what the IR's sidecar says it was built for, else fp32). fp32 is asked for explicitly: on
  CPUs with AMX, OpenVINO's own default is bf16, which would not be the FP32 the report says. After
  compiling, the runner reads back the precision OpenVINO actually uses; a bf16 request on a CPU
  without BF16 runs in f32 and ``notes`` says so.
- ``performance``: "latency" (one stream, every core on one request: what a single caller waits) or
  "throughput" (several streams; a batch is split across parallel requests and gathered again).
  ``streams`` and ``threads`` override what the hint picks.
- ``cache_dir``: OpenVINO's compiled-model cache; a second load of the same model reads the compiled
  blob instead of compiling (measured on TANet-R50: 1.25 s -> 0.42 s).
- Each batch size runs on a model compiled for that static shape (compiled at its first call, kept):
  with the batch dynamic, TANet-R50 took 1.29x TSN-R50 in bf16 instead of 1.12x (one interleaved run;
  TSN itself ran as fast either way), since the shift and reshape ops around TAM lose their static
  shapes. The model compiled at activation, with the batch dynamic, gives the I/O and the precision.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tamdeploy.deploy.runners.base import Runner, TensorSpec
from tamdeploy.deploy.runners.openvino_ir import (
    INFERENCE_KEY,
    INFERENCE_PRECISIONS,
    PRECISION_KEY,
    check_ir,
    check_sidecar_against_ir,
    cpu_has_bf16,
    embedded_info,
    openvino_message,
    openvino_version,
    read_model,
    read_sidecar,
    tamdeploy_core,
)
from tamdeploy.errors import TamdeployError
from tamdeploy.exporters.metadata import ModelMetadata, metadata_from_props

PERFORMANCE_MODES = ("latency", "throughput")
IR_SUFFIXES = (".xml",)
# OpenVINO's element type names that differ from numpy's
_OV_TYPES = {"f32": "float32", "f16": "float16", "f64": "float64", "bf16": "float32"}


class OpenVINORunner(Runner):
    """Runs an OpenVINO IR (``.xml`` + ``.bin``) or an ONNX model with OpenVINO (see the module doc)."""

    def __init__(self, model: str | os.PathLike, *, precision: str | None = None, performance: str = "latency",
                 streams: int | None = None, threads: int | None = None, cache_dir: str | os.PathLike | None = None,
                 device: str = "CPU") -> None:
        if precision is not None and precision not in INFERENCE_PRECISIONS:
            raise TamdeployError(f"`precision` for OpenVINO must be one of {', '.join(INFERENCE_PRECISIONS)}, "
                                 f"got {precision!r}")
        if performance not in PERFORMANCE_MODES:
            raise TamdeployError(f"`performance` must be one of {', '.join(PERFORMANCE_MODES)}, got {performance!r}")
        if streams is not None and streams < 1:
            raise TamdeployError(f"`streams` must be at least 1, got {streams}")
        super().__init__(f"openvino-{device.lower()}", threads)
        self.model_path = Path(model)
        self.requested_precision = precision
        self.performance = performance
        self.streams = streams
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.device = device
        self.sidecar: dict | None = None
        self.metadata: ModelMetadata | None = None  # tamdeploy's metadata of the exported model, when known
        self.inference_precision: str | None = None  # what OpenVINO reports it uses, after compiling
        self.notes: list[str] = []
        self._model: Any = None
        self._core: Any = None
        self._config: dict[str, str] = {}
        self._compiled: Any = None
        self._built: dict[str, Any] = {}  # the sidecar, or what the model carries: precision, metadata
        self._static: dict[tuple[int, ...], tuple[Any, Any]] = {}  # input shape -> (compiled, request)
        self._parallel: list[Any] = []  # throughput mode: one request per stream, on the dynamic model
        self._requests = 1

    # --- lifecycle -------------------------------------------------------------------------------

    def activate_impl(self) -> None:
        path = self.model_path
        if not path.is_file():
            raise TamdeployError(f"{path} does not exist" if not path.exists() else f"{path} is not a file")
        core = tamdeploy_core(self.cache_dir)
        if path.suffix.lower() in IR_SUFFIXES:
            self.sidecar = read_sidecar(path)
            check_ir(path, self.sidecar, openvino_version())
        model = read_model(core, path)
        # what the model was built as: the IR's sidecar, else what the model itself carries (an IR copied
        # without its sidecar, or an ONNX file: tamdeploy's metadata_props, which OpenVINO keeps)
        embedded = embedded_info(model)
        if self.sidecar is not None:
            check_sidecar_against_ir(path, self.sidecar, embedded)
        built = self.sidecar or {"precision": embedded.get(PRECISION_KEY), "inference_precision":
                                 embedded.get(INFERENCE_KEY), "metadata": embedded}
        self.metadata = metadata_from_props(built.get("metadata") or {})
        if self.metadata is not None:
            self.config = self.metadata.config
        # FP16 weights and INT8 graphs stay what they are; bf16 is only a hint (``precision`` overrides it)
        graph_precision = built.get("precision") if built.get("precision") in ("fp16", "int8") else "fp32"
        self._built = built
        if (self.sidecar or {}).get("calibration") and self.sidecar["calibration"].get("random"):
            self.notes.append(f"{path.name}'s INT8 ranges were calibrated on random pixels: its accuracy on real "
                              f"video is unknown")
        asked = self.requested_precision or self._built_precision() or "fp32"
        if asked == "bf16" and not cpu_has_bf16(core):
            self.notes.append("this CPU has no native BF16: OpenVINO runs the bf16 request in f32")
        config = {"PERFORMANCE_HINT": self.performance.upper(),
                  "INFERENCE_PRECISION_HINT": INFERENCE_PRECISIONS[asked]}
        if self.streams is not None:
            config["NUM_STREAMS"] = str(self.streams)
        if self.threads is not None:
            config["INFERENCE_NUM_THREADS"] = str(self.threads)
        try:
            compiled = core.compile_model(model, self.device, config)
        except Exception as e:
            raise TamdeployError(f"OpenVINO cannot compile {path.name} for {self.device}: {openvino_message(e)}") from e
        used = compiled.get_property("INFERENCE_PRECISION_HINT")  # an openvino.Type: f32, bf16, f16
        used = used.get_type_name() if hasattr(used, "get_type_name") else str(used)
        self.inference_precision = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}.get(used, used)
        # what the artifact computes in: an INT8 or FP16 graph keeps its own; FP32 runs at the inference precision
        self.precision = graph_precision if graph_precision != "fp32" else self.inference_precision
        self._core, self._model, self._config, self._compiled = core, model, config, compiled
        self._requests = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))

    @property
    def settings(self) -> dict[str, Any]:
        """What OpenVINO compiled the model with (read back, not just what was asked for)."""
        if self._compiled is None:
            return {}
        return {"performance": self.performance, "streams": int(self._compiled.get_property("NUM_STREAMS")),
                "inference_precision": self.inference_precision, "threads": int(self._compiled.get_property(
                    "INFERENCE_NUM_THREADS")), "cache_dir": str(self.cache_dir) if self.cache_dir else None}

    def _built_precision(self) -> str | None:
        """The inference precision the IR was built for (its sidecar or its own metadata), when it names one."""
        hint = self._built.get("inference_precision")
        return hint if hint in INFERENCE_PRECISIONS else None

    def input_specs_impl(self) -> Sequence[TensorSpec]:
        """Names from the model as read (a compiled port may also carry names the plugin gave it, e.g. the
        output of an FP16 graph's input Cast, and ``get_any_name`` may pick one); feeds go by position."""
        specs = []
        for read, port in zip(self._model.inputs, self._compiled.inputs, strict=True):
            shape = port.get_partial_shape()
            dims = tuple(d.get_length() if d.is_static else None for d in shape)
            element = port.get_element_type().get_type_name()
            specs.append(TensorSpec(read.get_any_name(), dims, np.dtype(_OV_TYPES.get(element, element))))
        return specs

    def output_names_impl(self) -> Sequence[str]:
        return [port.get_any_name() for port in self._compiled.outputs]

    def _for_shape(self, feed: Mapping[str, np.ndarray]) -> tuple[Any, Any]:
        """(compiled model, infer request) for the feed's static shapes, compiled at the first such feed."""
        key = tuple(dim for array in feed.values() for dim in array.shape)
        if key not in self._static:
            model = self._model.clone()
            model.reshape({i: list(array.shape) for i, array in enumerate(self._positional(feed))})
            compiled = self._core.compile_model(model, self.device, self._config)
            self._static[key] = (compiled, compiled.create_infer_request())
        return self._static[key]

    def infer_impl(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        batch = next(iter(feed.values())).shape[0]
        if self.performance == "throughput" and self._requests > 1 and batch > 1:
            return self._infer_parallel(feed, batch)
        _, request = self._for_shape(feed)
        request.infer(dict(enumerate(self._positional(feed))))
        return {name: request.get_output_tensor(i).data.copy() for i, name in enumerate(self._outputs)}

    def _positional(self, feed: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """The feed's arrays in the model's input order."""
        return [feed[spec.name] for spec in self.input_specs()]

    def _infer_parallel(self, feed: Mapping[str, np.ndarray], batch: int) -> dict[str, np.ndarray]:
        """The batch split into one chunk per parallel request (OpenVINO's streams), then gathered.

        Plain requests started and waited for, with no Python callback: an ``AsyncInferQueue`` whose
        callback needs the GIL deadlocked once when the compiled model was freed after it (in CI)."""
        if not self._parallel:
            self._parallel = [self._compiled.create_infer_request() for _ in range(self._requests)]
        chunks = np.array_split(np.arange(batch), min(self._requests, batch))
        running = list(zip(self._parallel[:len(chunks)], chunks, strict=True))
        for request, rows in running:
            request.start_async({i: array[rows[0]:rows[-1] + 1] for i, array in enumerate(self._positional(feed))},
                                share_inputs=False)
        for request, _ in running:
            request.wait()
        return {name: np.concatenate([request.get_output_tensor(k).data.copy() for request, _ in running])
                for k, name in enumerate(self._outputs)}

    def deactivate_impl(self) -> None:
        for request in self._parallel:
            request.wait()
        self._parallel.clear()
        self._static.clear()
        self._compiled = self._model = self._core = None
