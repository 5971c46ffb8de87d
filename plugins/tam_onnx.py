"""TAMAggregate in ONNX: the custom node, its model-local function, and helpers around them.

Export (torch 2.14, onnxscript 0.7)::

    program = torch.onnx.export(model, args, dynamo=True, dynamic_shapes=...,
                                custom_translation_table=tam_translation_table())
    model = add_tam_function(program.model_proto)   # or inline_tam_functions(...) for --tam-op onnx

Each ``torch.ops.tamdeploy.tam_aggregate`` becomes ONE node ``tamdeploy::TAMAggregate`` (version
1) with attributes ``num_segments`` = T, ``kernel_size`` = K and ``plugin_namespace`` (TensorRT's
plugin lookup). The translation emits the bare node, and the function is attached afterwards,
because ``torch.onnx.export(dynamo=True)`` always runs onnxscript's version converter, which
inlines every model-local function first (even at the same opset, even with ``optimize=False``):
a function added during translation would never survive the export.

One generic function serves every (T, K) in a model: the body reads T and K from the node's
attributes (attribute references); after inlining, ONNX Runtime constant-folds all that depends
on them alone. The body turns TAM into one batched MatMul per clip and channel::

    A[n, c, t, u] = kernel[n, c, u - t + P] * local[n, c, u]     (zero off the band)
    Y[n, :, c, :] = A[n, c] @ X[n, :, c, :]                      (X viewed [N, T, C, H*W])

A is a tiny [N, C, T, T] tensor, one GEMM of the outer product kernel x local with a constant
0/1 band matrix; X costs two Transposes and the MatMul. Measured on ONNX Runtime 1.32 CPU (2-core
AMD EPYC VM, fp32, N=1, T=8, K=3, benchmarks/bench_tam_op.py) against the first body (Pad + K
Slices + Mul + Add): 2.2-2.6x faster at layer1 size, 1.9-2.1x at layer2, 1.6-1.9x at layer3,
1.35-1.5x at layer4. An Einsum in place of Transpose-MatMul-Transpose was 1.3-1.6x slower, and a
Gather of kernel taps to build A cost more than the GEMM (ORT gathers on a last axis element by
element). In a TANet-R50 vs TSN-R50 (random weights, 8x224x224, same exporter), TANet took
1.04-1.06x the time of TSN on ONNX Runtime with this body, 1.13-1.19x with the slice body.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, Union

import onnx
import onnx.inliner
import onnxscript
import torch
from onnx.defs import OpSchema
from onnxscript import BFLOAT16, DOUBLE, FLOAT, FLOAT16
from onnxscript import opset18 as op
from onnxscript.values import Opset

import tamdeploy.plugins.tam_op  # noqa: F401  (registers torch.ops.tamdeploy.tam_aggregate)
from tamdeploy.errors import ExportError
from tamdeploy.onnx_model import copy_model, make_model
from tamdeploy.plugins.contract import TAM_DOMAIN, TAM_DOMAIN_VERSION, TAM_OP_TYPE, TAM_PLUGIN_NAMESPACE, is_tam_node

# The body's ops keep their meaning from opset 18 on; torch's exporter emits nothing older.
MIN_OPSET = 18

TFloat = TypeVar("TFloat", bound=Union[FLOAT, FLOAT16, BFLOAT16, DOUBLE])  # noqa: UP007 (read by onnxscript)

_tamdeploy_opset = Opset(TAM_DOMAIN, TAM_DOMAIN_VERSION)


@onnxscript.script(_tamdeploy_opset, default_opset=op)
def TAMAggregate(  # noqa: N802  (the function's name is the ONNX op type)
    x: TFloat, kernel: TFloat, local: TFloat, num_segments: int, kernel_size: int, plugin_namespace: str
) -> TFloat:
    # Typed int64 constants throughout: python literals here would make onnxscript emit CastLike
    # nodes, which ONNX Runtime cannot constant-fold once the body is inlined.
    zero, one, two = op.Constant(value_int=0), op.Constant(value_int=1), op.Constant(value_int=2)
    t = op.Constant(value_int=num_segments)
    k = op.Constant(value_int=kernel_size)
    t1 = op.Reshape(t, [1])
    frames = op.Range(zero, t, one)
    # band[j, v, t, u] = (u - t + P == j) and (v == u), so that (kernel x local) @ band = A
    on_band = op.Equal(
        op.Add(op.Sub(op.Unsqueeze(frames, [0, 1, 2]), op.Unsqueeze(frames, [0, 1, 3])), op.Div(op.Sub(k, one), two)),
        op.Unsqueeze(op.Range(zero, k, one), [1, 2, 3]),
    )
    on_local = op.Equal(op.Unsqueeze(frames, [0, 1, 2]), op.Unsqueeze(frames, [0, 2, 3]))
    band = op.Reshape(op.And(on_band, on_local), op.Concat(op.Mul(op.Reshape(k, [1]), t1), op.Mul(t1, t1), axis=0))
    outer = op.Reshape(op.Mul(op.Unsqueeze(kernel, [3]), op.Unsqueeze(local, [2])), [0, 0, -1])  # [N, C, K*T]
    mix_shape = op.Concat(op.Constant(value_ints=[0, 0]), t1, t1, axis=0)
    mix = op.Reshape(op.MatMul(outer, op.CastLike(band, kernel)), mix_shape)  # A: [N, C, T, T]
    x_shape = op.Concat(
        op.Shape(kernel, end=1), t1, op.Shape(kernel, start=1, end=2), op.Constant(value_ints=[-1]), axis=0
    )
    x_ncts = op.Transpose(op.Reshape(x, x_shape), perm=[0, 2, 1, 3])
    return op.Reshape(op.Transpose(op.MatMul(mix, x_ncts), perm=[0, 2, 1, 3]), op.Shape(x))


def _node_schema() -> OpSchema:
    """The schema onnxscript needs to emit a bare TAMAggregate node (never registered globally)."""
    param = OpSchema.FormalParameter
    return OpSchema(
        TAM_OP_TYPE,
        TAM_DOMAIN,
        TAM_DOMAIN_VERSION,
        inputs=[param("X", "T"), param("kernel", "T"), param("local", "T")],
        outputs=[param("Y", "T")],
        type_constraints=[("T", [f"tensor({t})" for t in ("float", "float16", "bfloat16", "double")], "")],
        attributes=[
            OpSchema.Attribute("num_segments", OpSchema.AttrType.INT, "T"),
            OpSchema.Attribute("kernel_size", OpSchema.AttrType.INT, "K, odd"),
            OpSchema.Attribute("plugin_namespace", OpSchema.AttrType.STRING, "TensorRT plugin namespace"),
        ],
    )


_tam_node = onnxscript.values.Op(_tamdeploy_opset, TAM_OP_TYPE, op_schema=_node_schema())


def _translate_tam_aggregate(x: TFloat, kernel: TFloat, local: TFloat) -> TFloat:
    num_segments, kernel_size = local.shape[-1], kernel.shape[-1]
    if not isinstance(num_segments, int) or not isinstance(kernel_size, int):
        raise ExportError(
            f"TAM needs a static number of segments T and kernel size K to export, got local "
            f"{local.shape} and kernel {kernel.shape}: make only the batch dimension dynamic"
        )
    return _tam_node(
        x,
        kernel,
        local,
        num_segments=num_segments,
        kernel_size=kernel_size,
        plugin_namespace=TAM_PLUGIN_NAMESPACE,
    )


def tam_translation_table() -> dict[Callable[..., Any], Callable[..., Any]]:
    """Entries for ``torch.onnx.export(dynamo=True, custom_translation_table=...)``."""
    return {torch.ops.tamdeploy.tam_aggregate.default: _translate_tam_aggregate}


def tam_function_proto(opset_version: int = MIN_OPSET) -> onnx.FunctionProto:
    """The TAMAggregate local function, importing the default domain at ``opset_version``."""
    if opset_version < MIN_OPSET:
        raise ExportError(f"the TAMAggregate function needs ONNX opset >= {MIN_OPSET}, got {opset_version}")
    function = TAMAggregate.to_function_proto()
    for opset in function.opset_import:
        if opset.domain in ("", "ai.onnx"):
            opset.version = opset_version  # the checker wants the model's version here
    return function


def _default_opset_version(model: onnx.ModelProto) -> int:
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx"):
            return opset.version
    raise ExportError("the ONNX model imports no default-domain opset")


def _uses_tam(model: onnx.ModelProto) -> bool:
    return any(is_tam_node(node) for node in model.graph.node)


def add_tam_function(model: onnx.ModelProto) -> onnx.ModelProto:
    """Give ``model`` (changed in place and returned) the TAMAggregate function its nodes call."""
    if not _uses_tam(model):
        return model
    kept = [f for f in model.functions if (f.domain, f.name) != (TAM_DOMAIN, TAM_OP_TYPE)]
    del model.functions[:]
    model.functions.extend([*kept, tam_function_proto(_default_opset_version(model))])
    if not any(opset.domain == TAM_DOMAIN for opset in model.opset_import):
        model.opset_import.append(onnx.helper.make_opsetid(TAM_DOMAIN, TAM_DOMAIN_VERSION))
    return model


def inline_tam_functions(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` with every TAMAggregate node replaced by its standard-op body."""
    inlined = onnx.inliner.inline_selected_functions(
        add_tam_function(copy_model(model)), [(TAM_DOMAIN, TAM_OP_TYPE)], exclude=False
    )
    # The inliner drops the inlined function but keeps its domain's opset import.
    imports = [opset for opset in inlined.opset_import if opset.domain != TAM_DOMAIN]
    del inlined.opset_import[:]
    inlined.opset_import.extend(imports)
    return inlined


def make_tam_model(
    num_segments: int,
    kernel_size: int,
    channels: int,
    height: int,
    width: int,
    *,
    elem_type: int = onnx.TensorProto.FLOAT,
    opset_version: int = MIN_OPSET,
    inline: bool = False,
) -> onnx.ModelProto:
    """A model of one TAMAggregate node with a dynamic batch: inputs x, kernel, local; output y."""
    helper = onnx.helper
    node = helper.make_node(
        TAM_OP_TYPE,
        ["x", "kernel", "local"],
        ["y"],
        domain=TAM_DOMAIN,
        num_segments=num_segments,
        kernel_size=kernel_size,
        plugin_namespace=TAM_PLUGIN_NAMESPACE,
    )
    frames = f"N*{num_segments}"
    graph = helper.make_graph(
        [node],
        "tam_aggregate",
        [
            helper.make_tensor_value_info("x", elem_type, [frames, channels, height, width]),
            helper.make_tensor_value_info("kernel", elem_type, ["N", channels, kernel_size]),
            helper.make_tensor_value_info("local", elem_type, ["N", channels, num_segments]),
        ],
        [helper.make_tensor_value_info("y", elem_type, [frames, channels, height, width])],
    )
    model = make_model(
        graph,
        opset_imports=[
            helper.make_opsetid("", opset_version),
            helper.make_opsetid(TAM_DOMAIN, TAM_DOMAIN_VERSION),
        ],
        functions=[tam_function_proto(opset_version)],
    )
    return inline_tam_functions(model) if inline else model
