"""``tamdeploy::TAMAggregate`` as a TensorRT plugin, through ``tensorrt.plugin`` (quickly deployable plugins).

TensorRT's ONNX parser maps a node to a registered plugin by its op type (the plugin name,
``TAMAggregate``) and its string attribute ``plugin_namespace`` (``tamdeploy``); the node's other
attributes (``num_segments``, ``kernel_size``) become the plugin's attributes. Without the plugin
registered, the parser imports the node's ONNX local function instead (standard ops).

``register_tam_plugin()`` registers, once per process:

- ``@trtp.register``: the shape and type descriptor. Y has X's shape and type; X, kernel and local
  share one type, FP32 or FP16 (``plugin_output_shape`` / ``plugin_output_dtype`` below).
- ``@trtp.aot_impl`` (TensorRT >= 10.9): the Triton kernel compiled to PTX for the GPU the engine is
  built on (``tamdeploy.plugins.triton_tam.compile_tam_kernel``), with its launch grid and extra
  int32 arguments (C, H*W) as symbolic expressions of the input shapes. The engine embeds the PTX and
  runs without Python (trtexec, C++). Plugin attributes are not serialized with an AOT
  implementation: T and K are compiled into the kernel.
- ``@trtp.impl``: the JIT fallback, which launches the same kernel from Python on TensorRT's stream
  (TensorRT 10.7/10.8, or a network built with ``PREFER_JIT_PYTHON_PLUGINS``). An engine built with
  it needs ``register_tam_plugin()`` called in the process that deserializes it.
- ``@trtp.autotune``: FP32 and FP16 (all four tensors of one type), linear layout.

Everything TensorRT-independent (shape and type rules, which T and K to compile, the launch grid
in ``triton_tam.launch_grid``) is a plain function here, tested on machines without TensorRT.

Written against the ``tensorrt.plugin`` API of TensorRT 10.9-10.x and 11.x: the decorated
functions' annotations are read at registration, so this module must not use
``from __future__ import annotations``; ``aot_impl`` receives every plugin attribute positionally,
so ``resolve_segments_and_kernel`` takes T and K from the (static) input shapes when it can.
"""

import functools
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, List, Tuple, Union  # noqa: UP035 (tensorrt.plugin validates typing-module annotations)

from tamdeploy.errors import TamdeployError
from tamdeploy.plugins.contract import TAM_OP_TYPE, TAM_PLUGIN_NAMESPACE

PLUGIN_NAMESPACE = TAM_PLUGIN_NAMESPACE
PLUGIN_NAME = TAM_OP_TYPE
PLUGIN_ID = f"{PLUGIN_NAMESPACE}::{PLUGIN_NAME}"
PLUGIN_DTYPES = {"float32": "fp32", "float16": "fp16"}
# X, kernel, local, Y: all FP32 or all FP16 (the i-th alternative of every position goes together)
AUTOTUNE_TYPES = "FP32|FP16, FP32|FP16, FP32|FP16, FP32|FP16"
AUTOTUNE_LAYOUT = "LINEAR"

Dim = Union[int, None]  # noqa: UP007 (None: not known at build time)


class TAMPluginError(TamdeployError, ValueError):
    """Tensors or attributes that the TAMAggregate plugin cannot take."""


# --- pure logic -------------------------------------------------------------------------------------


def plugin_output_dtype(x: str, kernel: str, local: str) -> str:
    """Y's type from the inputs' numpy type names: all one type, float32 or float16."""
    if not x == kernel == local:
        raise TAMPluginError(f"TAMAggregate inputs must share one type, got X {x}, kernel {kernel}, local {local}")
    if x not in PLUGIN_DTYPES:
        raise TAMPluginError(f"TAMAggregate takes {' or '.join(PLUGIN_DTYPES)}, got {x}")
    return x


def _known(d: Dim) -> bool:
    return d is not None and d >= 0


def plugin_output_shape(x: Sequence[Dim], kernel: Sequence[Dim], local: Sequence[Dim]) -> tuple[Dim, ...]:
    """Y's shape: X's. Checks ranks and every relation between the dimensions that are known
    (None or -1: dynamic): X [N*T, C, H, W], kernel [N, C, K] with K odd, local [N, C, T]."""
    for name, dims, rank, layout in (("X", x, 4, "[N*T, C, H, W]"), ("kernel", kernel, 3, "[N, C, K]"),
                                     ("local", local, 3, "[N, C, T]")):
        if len(dims) != rank:
            raise TAMPluginError(f"TAMAggregate {name} must be {layout}, got rank {len(dims)}")
    for a, b, what in ((x[1], kernel[1], "X and kernel disagree on C"), (x[1], local[1], "X and local disagree on C"),
                       (kernel[0], local[0], "kernel and local disagree on N")):
        if _known(a) and _known(b) and a != b:
            raise TAMPluginError(f"TAMAggregate: {what} ({a} vs {b})")
    if _known(kernel[2]) and kernel[2] % 2 == 0:
        raise TAMPluginError(f"TAMAggregate: the kernel size K must be odd, got {kernel[2]}")
    n = kernel[0] if _known(kernel[0]) else local[0]
    if _known(x[0]) and _known(n) and _known(local[2]) and x[0] != n * local[2]:
        raise TAMPluginError(f"TAMAggregate: X has {x[0]} frames, not N*T = {n}*{local[2]}")
    return tuple(x)


def resolve_segments_and_kernel(kernel: Sequence[Dim], local: Sequence[Dim], num_segments: int,
                                kernel_size: int) -> tuple[int, int]:
    """(T, K) to compile: from the input shapes where they are static, else from the attributes.

    tensorrt.plugin passes attributes to ``aot_impl`` by position, in the order the plugin's fields
    arrived, which the ONNX parser does not promise to keep: the static shapes come first, and
    attributes that match them in either order are accepted."""
    t = local[2] if _known(local[2]) else None
    k = kernel[2] if _known(kernel[2]) else None
    attrs = {num_segments, kernel_size}
    if t is not None and k is not None:
        if attrs != {t, k}:
            raise TAMPluginError(f"TAMAggregate attributes num_segments={num_segments}, kernel_size={kernel_size} "
                                 f"disagree with the inputs (T={t}, K={k})")
        return t, k
    if t is not None:
        return t, kernel_size if num_segments == t else num_segments
    if k is not None:
        return num_segments if kernel_size == k else kernel_size, k
    return num_segments, kernel_size


# --- TensorRT registration --------------------------------------------------------------------------


@dataclass(frozen=True)
class PluginSupport:
    """What this TensorRT offers the plugin: ``aot`` needs TensorRT >= 10.9."""

    tensorrt_version: str
    aot: bool
    jit: bool = True

    @property
    def preferred(self) -> str:
        return "aot" if self.aot else "jit"

    def to_dict(self) -> dict:
        return asdict(self)


def plugin_available() -> bool:
    """Whether ``tensorrt.plugin`` (TensorRT >= 10.7) can be imported."""
    try:
        import tensorrt.plugin  # noqa: F401
    except ImportError:
        return False
    return True


def _static_dims(desc: Any) -> list[Dim]:
    """The dims of a ``trtp.TensorDesc`` known at build time (None where dynamic or not yet known)."""
    dims: list[Dim] = [None] * desc.ndim
    if getattr(desc, "has_shape", False):
        for i, d in enumerate(desc.shape):
            dims[i] = int(d) if d >= 0 else None
    for i, expr in enumerate(desc.shape_expr):
        if dims[i] is None and not expr.is_fake and expr.is_constant:
            dims[i] = int(expr.constant_value())
    return dims


def _dtype_name(dtype: Any) -> str:
    import numpy as np
    import tensorrt as trt

    return np.dtype(trt.nptype(dtype)).name


@functools.cache
def _compiled(dtype: str, t: int, k: int, capability: tuple[int, int], hw: Union[int, None]) -> Any:  # noqa: UP007
    from tamdeploy.plugins.triton_tam import compile_tam_kernel

    return compile_tam_kernel(dtype, t, k, capability=capability, hw=hw)


def _build_capability() -> tuple[int, int]:
    import torch

    return torch.cuda.get_device_capability()


@functools.cache
def register_tam_plugin() -> PluginSupport:
    """Register ``tamdeploy::TAMAggregate`` with TensorRT (once per process); what it supports.

    Raises ImportError where ``tensorrt.plugin`` is missing (TensorRT < 10.7 or not installed)."""
    import tensorrt as trt
    import tensorrt.plugin as trtp

    @trtp.register(PLUGIN_ID)
    def tam_aggregate_desc(x: trtp.TensorDesc, kernel: trtp.TensorDesc, local: trtp.TensorDesc, num_segments: int,
                           kernel_size: int) -> trtp.TensorDesc:
        plugin_output_dtype(_dtype_name(x.dtype), _dtype_name(kernel.dtype), _dtype_name(local.dtype))
        plugin_output_shape(_static_dims(x), _static_dims(kernel), _static_dims(local))
        return x.like()

    @trtp.autotune(PLUGIN_ID)
    def tam_aggregate_autotune(x: trtp.TensorDesc, kernel: trtp.TensorDesc, local: trtp.TensorDesc,
                               outputs: Tuple[trtp.TensorDesc]) -> List[trtp.AutoTuneCombination]:  # noqa: UP006
        return [trtp.AutoTuneCombination(AUTOTUNE_TYPES, AUTOTUNE_LAYOUT)]

    @trtp.impl(PLUGIN_ID)
    def tam_aggregate_jit(x: trtp.Tensor, kernel: trtp.Tensor, local: trtp.Tensor,
                          outputs: Tuple[trtp.Tensor], stream: int) -> None:  # noqa: UP006
        import torch

        from tamdeploy.plugins.triton_tam import launch_tam_kernel

        with torch.cuda.stream(torch.cuda.ExternalStream(stream)):
            launch_tam_kernel(*(torch.as_tensor(t, device="cuda") for t in (x, kernel, local, outputs[0])))

    aot = hasattr(trtp, "aot_impl")
    if aot:
        @trtp.aot_impl(PLUGIN_ID)
        def tam_aggregate_aot(
            x: trtp.TensorDesc, kernel: trtp.TensorDesc, local: trtp.TensorDesc, num_segments: int, kernel_size: int,
            outputs: Tuple[trtp.TensorDesc], tactic: int,  # noqa: UP006
        ) -> Tuple[Union[str, bytes], Union[str, bytes], trtp.KernelLaunchParams, trtp.SymExprs]:  # noqa: UP006,UP007
            from tamdeploy.plugins.triton_tam import launch_grid

            x_dims = _static_dims(x)
            t, k = resolve_segments_and_kernel(_static_dims(kernel), _static_dims(local), num_segments, kernel_size)
            hw = x_dims[2] * x_dims[3] if _known(x_dims[2]) and _known(x_dims[3]) else None
            compiled = _compiled(PLUGIN_DTYPES[_dtype_name(x.dtype)], t, k, _build_capability(), hw)
            n_expr, c_expr = kernel.shape_expr[0], x.shape_expr[1]
            hw_expr = x.shape_expr[2] * x.shape_expr[3]
            grid_x, grid_y, grid_z = launch_grid(n_expr, c_expr, hw_expr, compiled.launch, cdiv=trtp.cdiv)
            params = trtp.KernelLaunchParams()
            params.grid_x, params.grid_y, params.grid_z = grid_x, grid_y, grid_z
            params.block_x = compiled.threads
            params.shared_mem = compiled.shared
            # the kernel's scalar arguments between the input and output pointers: C, H*W
            extra = trtp.SymIntExprs.from_tuple([trtp.SymInt32(c_expr), trtp.SymInt32(hw_expr)])
            return compiled.name.encode(), compiled.ptx.encode(), params, extra

    return PluginSupport(tensorrt_version=trt.__version__, aot=aot)
