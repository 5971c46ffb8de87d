"""FP16 graphs, and the graph helpers the INT8 pass shares: precision lives in the ONNX graph.

``convert_fp16`` runs ONNX Runtime's float16 converter (``onnxruntime.transformers.float16``) with
FP32 inputs and outputs kept (a Cast after the input, one before the output), then repairs what the
converter leaves: its node list is not topologically sorted (it appends the input/output Casts and
the Casts around blocked nodes at the end), which ``onnx.checker`` and TensorRT's parser reject, so
``topological_sort`` orders it (Kahn's algorithm, stable: nodes keep their order where they can).
The converter does not look into model-local functions: the TAMAggregate node gets FP16 inputs, and
its function body follows them, since every float constant in it is made by ``CastLike`` of the
node's ``kernel`` input (checked by ``check_precision_graph``: onnx.checker and strict shape
inference, which type-checks the body for the node's input types).

Why not the alternatives: onnxconverter-common's converter is the same code (ONNX Runtime's copy
is the maintained one) and ``onnxscript``'s rewriter has no float16 pass; casting the PyTorch model
with ``.half()`` before export would put FP16 at the inputs and lose the block list.

The block list (``FP16_BLOCK_OPS``, on top of the converter's own ``DEFAULT_OP_BLOCK_LIST``) is empty,
by measurement on the models tests/test_precision.py trains (width-0.25 TANet-R50 and ACTION-Net-R50,
T=4, 32x32, ONNX Runtime 1.32 CPU, 256 held-out mp4 clips; relative L2 of the logits vs FP32, top-1
agreement)::

    kept in FP32            TANet rel L2 / agree    ACTION-Net rel L2 / agree
    nothing                 4.29e-4 / 100 %         7.12e-4 / 100 %
    Softmax (TAM kernel)    4.28e-4 / 100 %         (none in the graph)
    ReduceMean (pooling)    4.90e-4 / 100 %         7.79e-4 / 100 %
    Sigmoid (gates)         5.27e-4 / 100 %         7.10e-4 / 100 %
    TAM kernel branch       5.23e-4 / 100 %         -

Blocking the suspects bought nothing and the Casts around them cost a little. Caveat: ONNX Runtime's
CPU provider has FP16 kernels for few ops and runs the rest through inserted Casts to FP32, so on a
CPU this measures FP16 storage of every tensor between ops, not FP16 arithmetic inside them; TensorRT
accumulates convolutions and GEMMs in FP32 too, but its FP16 reductions (ReduceMean over H x W) and
Softmax deserve a measurement on the GPU (``block_ops`` / ``block_nodes`` take them when needed).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import onnx

from tamdeploy.errors import TamdeployError
from tamdeploy.onnx_model import copy_model

PRECISIONS = ("fp32", "fp16", "int8")
TAM_DOMAIN = "tamdeploy"
TAM_OP_TYPE = "TAMAggregate"
_POOLING_OPS = ("ReduceMean", "GlobalAveragePool")
_MAX_BRANCH = 32

# Op types kept in FP32 besides the converter's defaults: none, by measurement (module doc).
FP16_BLOCK_OPS: tuple[str, ...] = ()


class PrecisionError(TamdeployError):
    """A model or option the FP16 / INT8 passes cannot work with."""


def load_onnx(path: str | os.PathLike) -> onnx.ModelProto:
    """The model at ``path``, or a one-line PrecisionError saying why it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise PrecisionError(f"{path} does not exist" if not path.exists() else f"{path} is not a file")
    try:
        return onnx.load(str(path))
    except Exception as e:  # protobuf raises DecodeError, onnx its own types, OSError for reads
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise PrecisionError(f"{path} is not an ONNX model: {why}") from e


def topological_sort(graph: onnx.GraphProto) -> None:
    """Order ``graph.node`` so that every node comes after the producers of its inputs (in place).

    Stable: among nodes that are ready, the one that came first in the old order goes first. Names
    no node produces (graph inputs, initializers, outer-scope values of a subgraph) are available
    from the start. A cycle is a PrecisionError.
    """
    import heapq

    nodes = list(graph.node)
    producer = {out: i for i, node in enumerate(nodes) for out in node.output if out}
    waiting_on = [0] * len(nodes)
    consumers: dict[int, list[int]] = {}
    for i, node in enumerate(nodes):
        deps = {producer[name] for name in _node_inputs(node) if name in producer}
        deps.discard(i)
        waiting_on[i] = len(deps)
        for d in deps:
            consumers.setdefault(d, []).append(i)
    ready = [i for i, n in enumerate(waiting_on) if n == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for c in consumers.get(i, ()):
            waiting_on[c] -= 1
            if waiting_on[c] == 0:
                heapq.heappush(ready, c)
    if len(order) != len(nodes):
        raise PrecisionError("the graph has a cycle; it cannot be ordered")
    del graph.node[:]
    graph.node.extend(nodes[i] for i in order)


def _node_inputs(node: onnx.NodeProto) -> Iterable[str]:
    """A node's inputs, and the outer-scope names its subgraphs (If, Loop, Scan) read."""
    yield from (name for name in node.input if name)
    for attr in node.attribute:
        for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
            local = {i.name for i in sub.input} | {i.name for i in sub.initializer}
            local |= {o for n in sub.node for o in n.output}
            for n in sub.node:
                yield from (name for name in _node_inputs(n) if name not in local)


def check_precision_graph(model: onnx.ModelProto, what: str) -> None:
    """onnx.checker (full) and strict shape/type inference, which also type-checks the TAMAggregate
    function body for the node's input types."""
    try:
        onnx.checker.check_model(model, full_check=True)
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise PrecisionError(f"the {what} graph failed ONNX checks: {str(e).splitlines()[0]}") from e


def set_precision_metadata(model: onnx.ModelProto, precision: str) -> bool:
    """Record ``precision`` in tamdeploy's metadata (in place); False for an ONNX without it."""
    from tamdeploy.exporters.metadata import read_metadata, write_metadata

    meta = read_metadata(model)
    if meta is None:
        return False
    write_metadata(model, replace(meta, precision=precision))
    return True


def graph_precision(model: onnx.ModelProto) -> str:
    """What the graph computes in: int8 with QuantizeLinear nodes, fp16 with float16 tensors, else fp32."""
    ops = {n.op_type for n in model.graph.node}
    if "QuantizeLinear" in ops or "DequantizeLinear" in ops:
        return "int8"
    f16 = onnx.TensorProto.FLOAT16
    if any(i.data_type == f16 for i in model.graph.initializer) or any(
            a.name == "to" and a.i == f16 for n in model.graph.node if n.op_type == "Cast" for a in n.attribute):
        return "fp16"
    return "fp32"


def require_fp32(model: onnx.ModelProto, path: str | os.PathLike) -> None:
    precision = graph_precision(model)
    if precision != "fp32":
        raise PrecisionError(f"{path} is already an {precision.upper()} graph; build from the FP32 model "
                             "that 'tamdeploy export' wrote")


# --- TAM structure ---------------------------------------------------------------------------------


def gate_branches(model: onnx.ModelProto, gates: Sequence[str] = ("Softmax", "Sigmoid")) -> list[str]:
    """Names of the nodes that compute gates from pooled features, in graph order: from each ``gates``
    node backwards up to a pooling (ReduceMean / GlobalAveragePool, not included) on every path.

    TAM's kernel branch (pooled -> Linear -> BN -> ReLU -> Linear -> Softmax) and local branch
    (-> Conv1d ... -> Sigmoid), ACTION-Net's excitations (STE, CE, ME: -> Conv -> Sigmoid) and SE
    layers are such branches: a few small layers whose output scales whole feature maps. Found from
    the graph's structure, so ``--tam-op plugin`` and ``onnx`` graphs give the same set; a gate whose
    ancestry reaches no pooling within ``_MAX_BRANCH`` nodes (a gate on full feature maps) is not one."""
    graph = model.graph
    producer = {out: n for n in graph.node for out in n.output}
    found: set[str] = set()
    for gate in (n for n in graph.node if n.op_type in gates):
        branch: dict[str, onnx.NodeProto] = {}
        frontier = [gate]
        pooled = False
        while frontier and len(branch) < _MAX_BRANCH:
            node = frontier.pop()
            if node.op_type in _POOLING_OPS:
                pooled = True
            elif node.name not in branch:
                branch[node.name] = node
                frontier.extend(producer[i] for i in node.input if i in producer)
        if pooled and not frontier:
            found.update(branch)
    return [n.name for n in graph.node if n.name in found]


def tam_kernel_branch(model: onnx.ModelProto) -> list[str]:
    """TAM's kernel branch: the gate branches that end in its Softmax."""
    return gate_branches(model, ("Softmax",))


def tam_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    return [n for n in model.graph.node if n.domain == TAM_DOMAIN and n.op_type == TAM_OP_TYPE]


# --- FP16 ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fp16Result:
    model: onnx.ModelProto
    blocked_nodes: list[str]  # nodes left in FP32 (by op type or name)
    casts_added: int

    def to_dict(self) -> dict:
        return {"blocked_nodes": len(self.blocked_nodes), "casts_added": self.casts_added}


def convert_fp16(model: onnx.ModelProto, *, keep_io_types: bool = True,
                 block_ops: Sequence[str] = FP16_BLOCK_OPS, block_nodes: Sequence[str] = ()) -> Fp16Result:
    """An FP16 copy of an FP32 ``model``: FP32 inputs/outputs (``keep_io_types``), the converter's
    default op block list plus ``block_ops``, and ``block_nodes`` (node names) kept in FP32; sorted,
    checked, metadata precision "fp16"."""
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    source = copy_model(model)
    casts_before = sum(n.op_type == "Cast" for n in source.graph.node)
    op_block = sorted(set(DEFAULT_OP_BLOCK_LIST) | set(block_ops))
    blocked = [n.name for n in source.graph.node
               if n.op_type in op_block or n.name in set(block_nodes)]
    converted = convert_float_to_float16(source, keep_io_types=keep_io_types, op_block_list=op_block,
                                         node_block_list=list(block_nodes))
    topological_sort(converted.graph)
    set_precision_metadata(converted, "fp16")
    check_precision_graph(converted, "FP16")
    casts = sum(n.op_type == "Cast" for n in converted.graph.node) - casts_before
    return Fp16Result(model=converted, blocked_nodes=blocked, casts_added=casts)
