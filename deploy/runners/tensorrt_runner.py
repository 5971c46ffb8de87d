"""TensorRT engines (``.plan``): run one like any other backend, for ``verify`` and ``bench``.

- Activation imports TensorRT (lazily: importing tamdeploy never needs it), needs a CUDA GPU, reads
  the engine's sidecar (``trt``) and refuses, with a one-line ``EngineMismatchError``, an engine built
  for another TensorRT version or GPU, or a plan that is not the one the sidecar describes (size and
  sha256: a build interrupted between writing the two leaves a new plan beside the old sidecar). An
  engine without a sidecar (built by trtexec, say) is loaded as it is. The TAMAggregate plugin is
  registered first when the engine runs it through Python (``plugin-jit``) or nothing says it does not.
- Buffers are torch CUDA tensors (no pycuda): the input shapes come from the feed, checked against
  the engine's optimization profile; outputs are allocated for each input shape once and reused.
- The runner has its own CUDA stream. ``last_gpu_ms`` is the GPU time of the last inference's
  enqueue, between CUDA events recorded on that stream around ``execute_async_v3`` (or the graph
  launch): trtexec's "GPU Compute Time", without the host-device copies that ``infer`` also does.
- ``cuda_graph=True`` captures the enqueue of each input shape into a CUDA graph after its first
  (plain) run and replays it afterwards; ``graph_captures`` and ``graph_replays`` count what
  happened, so a caller (and a test) can tell a replayed run from a plain one. An engine whose
  enqueue cannot be captured (a Python JIT plugin, say) keeps plain enqueues, and ``notes`` says so
  with the error's type and message.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tamdeploy.deploy.runners.base import Runner, TensorSpec
from tamdeploy.deploy.runners.trt import (
    check_plan,
    check_sidecar,
    gpu_identity,
    import_tensorrt_with_cuda,
    make_logger,
    read_sidecar,
)
from tamdeploy.errors import DataError, TamdeployError

if TYPE_CHECKING:
    import torch


@dataclass
class _Bound:
    """Device buffers of one set of input shapes, bound to the context, and its CUDA graph."""

    inputs: dict[str, torch.Tensor]
    outputs: dict[str, torch.Tensor]
    graph: Any = None
    runs: int = 0


class TensorRTRunner(Runner):
    """Runs a serialized TensorRT engine on a CUDA GPU; ``threads`` does not apply (the GPU runs it).

    ``device``: CUDA device index (None: the current device). ``cuda_graph``: replay each input
    shape's enqueue from a CUDA graph."""

    def __init__(self, engine: str | os.PathLike, *, threads: int | None = None, cuda_graph: bool = False,
                 device: int | None = None) -> None:
        super().__init__("tensorrt", threads)
        self.engine_path = Path(engine)
        self.cuda_graph = cuda_graph
        self.device_index = device
        self.sidecar: dict | None = None
        self.last_gpu_ms: float | None = None
        self.notes: list[str] = []
        self.graph_captures = 0
        self.graph_replays = 0
        self._trt: Any = None
        self._runtime: Any = None
        self._engine: Any = None
        self._context: Any = None
        self._stream: torch.cuda.Stream | None = None
        self._device: torch.device | None = None
        self._events: tuple[Any, Any] | None = None
        self._bound: dict[tuple, _Bound] = {}
        self._current: tuple | None = None
        self._profiles: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]] = {}

    # --- lifecycle -------------------------------------------------------------------------------

    def activate_impl(self) -> None:
        trt = import_tensorrt_with_cuda()
        import torch

        if not self.engine_path.is_file():
            raise TamdeployError(f"{self.engine_path} does not exist")
        device = torch.device("cuda", torch.cuda.current_device() if self.device_index is None else self.device_index)
        sidecar = read_sidecar(self.engine_path)
        gpu_name, capability = gpu_identity(device.index)
        plan = self.engine_path.read_bytes()  # read once: the bytes checked are the bytes loaded
        if sidecar is not None:
            check_sidecar(sidecar, self.engine_path, tensorrt_version=trt.__version__, gpu_name=gpu_name,
                          compute_capability=capability)
            check_plan(sidecar, self.engine_path, plan)
        if sidecar is None or sidecar.get("tam_op") == "plugin-jit":
            self._register_plugin()
        logger = make_logger(trt)
        with torch.cuda.device(device):
            runtime = trt.Runtime(logger)
            engine = runtime.deserialize_cuda_engine(plan)
            if engine is None:
                detail = "; ".join(logger.errors) or "not a TensorRT engine, or a damaged one"
                raise TamdeployError(f"TensorRT {trt.__version__} cannot load {self.engine_path.name}: {detail}")
            context = engine.create_execution_context()
            if context is None:
                raise TamdeployError(f"TensorRT could not create an execution context for {self.engine_path.name} "
                                     f"(out of GPU memory?): {'; '.join(logger.errors)}")
            self._stream = torch.cuda.Stream(device)
            self._events = (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
        self._trt, self._runtime, self._engine, self._context, self._device = trt, runtime, engine, context, device
        self.sidecar = sidecar
        if sidecar is not None:
            self.precision = sidecar.get("precision")
            if sidecar.get("config"):
                from tamdeploy.models.config import ModelConfig

                self.config = ModelConfig.from_dict(sidecar["config"])

    @staticmethod
    def _register_plugin() -> None:
        from tamdeploy.plugins.trt_plugin import plugin_available, register_tam_plugin

        if plugin_available():
            register_tam_plugin()

    def input_specs_impl(self) -> Sequence[TensorSpec]:
        specs = []
        for name in self._io_names(self._trt.TensorIOMode.INPUT):
            shape = tuple(int(d) for d in self._engine.get_tensor_shape(name))
            lo, opt, hi = (tuple(int(d) for d in s) for s in self._engine.get_tensor_profile_shape(name, 0))
            self._profiles[name] = (lo, opt, hi)
            specs.append(TensorSpec(name, tuple(None if d < 0 else d for d in shape), self._np_dtype(name)))
        return specs

    def output_names_impl(self) -> Sequence[str]:
        return self._io_names(self._trt.TensorIOMode.OUTPUT)

    def deactivate_impl(self) -> None:
        self._bound.clear()
        self._current = None
        self._context = self._engine = self._runtime = None
        self._stream = self._events = None
        self._profiles.clear()
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    # --- I/O -------------------------------------------------------------------------------------

    @property
    def batch_range(self) -> tuple[int, int]:
        """(min, max) batch of the engine's profile for its first input."""
        self._require_active("batch_range")
        lo, _, hi = self._profiles[self.input_name]
        return lo[0], hi[0]

    def _io_names(self, mode: Any) -> list[str]:
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        return [n for n in names if self._engine.get_tensor_mode(n) == mode]

    def _np_dtype(self, name: str) -> np.dtype:
        return np.dtype(self._trt.nptype(self._engine.get_tensor_dtype(name)))

    def _check_profile(self, feed: Mapping[str, np.ndarray]) -> None:
        for name, (lo, _, hi) in self._profiles.items():
            shape = feed[name].shape
            for axis, (d, a, b) in enumerate(zip(shape, lo, hi, strict=True)):
                if not a <= d <= b:
                    what = "batch" if axis == 0 else f"dimension {axis}"
                    raise DataError(f"tensorrt: input '{name}' has {what} {d}, outside the engine's profile {a}..{b}"
                                    f" ({self.engine_path.name}): rebuild it with a batch range that covers {d}")

    def _bind(self, feed: Mapping[str, np.ndarray]) -> _Bound:
        import torch

        key = tuple((name, feed[name].shape) for name in self._profiles)
        bound = self._bound.get(key)
        if bound is None:
            inputs = {name: torch.empty(feed[name].shape, dtype=_torch_dtype(feed[name].dtype), device=self._device)
                      for name in self._profiles}
            for name, tensor in inputs.items():
                self._context.set_input_shape(name, tuple(tensor.shape))
            outputs = {}
            for name in self._outputs:
                shape = tuple(int(d) for d in self._context.get_tensor_shape(name))
                outputs[name] = torch.empty(shape, dtype=_torch_dtype(self._np_dtype(name)), device=self._device)
            bound = self._bound[key] = _Bound(inputs, outputs)
            self._current = None
        if self._current != key:
            for name, tensor in bound.inputs.items():
                self._context.set_input_shape(name, tuple(tensor.shape))
                self._context.set_tensor_address(name, tensor.data_ptr())
            for name, tensor in bound.outputs.items():
                self._context.set_tensor_address(name, tensor.data_ptr())
            self._current = key
        return bound

    def infer_impl(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        self._check_profile(feed)
        start, end = self._events
        with torch.cuda.device(self._device), torch.cuda.stream(self._stream):
            bound = self._bind(feed)
            for name, tensor in bound.inputs.items():
                tensor.copy_(torch.from_numpy(np.ascontiguousarray(feed[name])))
            start.record(self._stream)
            if bound.graph is not None:
                bound.graph.replay()
                self.graph_replays += 1
            elif not self._context.execute_async_v3(self._stream.cuda_stream):
                raise TamdeployError(f"TensorRT failed to run {self.engine_path.name} (execute_async_v3 returned "
                                     f"False)")
            end.record(self._stream)
            result = {name: tensor.cpu().numpy() for name, tensor in bound.outputs.items()}
            end.synchronize()
            self.last_gpu_ms = start.elapsed_time(end)
            bound.runs += 1
            if self.cuda_graph and bound.graph is None and bound.runs == 1:
                bound.graph = self._capture()
        return result

    def _capture(self) -> Any:
        """A CUDA graph of the bound context's enqueue (after one plain run, as TensorRT requires)."""
        import torch

        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph, stream=self._stream, capture_error_mode="thread_local"):
                enqueued = self._context.execute_async_v3(self._stream.cuda_stream)
        except Exception as e:  # capture fails inside CUDA or TensorRT with their own errors
            return self._no_graph(f"{type(e).__name__}: {(str(e).splitlines() or [''])[0]}")
        if not enqueued:  # a graph without the enqueue would replay nothing and return stale outputs
            return self._no_graph("execute_async_v3 returned False while capturing")
        self.graph_captures += 1
        return graph

    def _no_graph(self, why: str) -> None:
        """Give up CUDA graphs for this runner, saying why in ``notes``."""
        self.cuda_graph = False
        self.notes.append(f"CUDA graph capture failed ({why}); running plain enqueues")


def _torch_dtype(dtype: np.dtype) -> torch.dtype:
    import torch

    return torch.from_numpy(np.empty(0, dtype=dtype)).dtype
