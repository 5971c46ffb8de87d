"""ONNX graph helpers the precision passes and the engine builder share: reading a model, what
precision a graph computes in, ordering and checking a rewritten graph, and finding the gate branches
(TAM's kernel and local branches, ACTION-Net's excitations, SE) that stay in float.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path

import onnx
from onnx import numpy_helper
from onnx.external_data_helper import uses_external_data

from tamdeploy.errors import TamdeployError
from tamdeploy.exporters.action_stats import is_pooling_constant
from tamdeploy.plugins.contract import tam_nodes

PRECISIONS = ("fp32", "fp16", "int8")
_POOLING_OPS = ("ReduceMean", "GlobalAveragePool")
_MAX_BRANCH = 32

__all__ = [
    "PRECISIONS", "PrecisionError", "check_precision_graph", "gate_branches", "graph_precision", "load_onnx",
    "pooling_matmuls", "require_fp32", "set_precision_metadata", "tam_kernel_branch", "tam_nodes", "topological_sort",
]


class PrecisionError(TamdeployError):
    """A model or option the FP16 / INT8 passes cannot work with."""


def load_onnx(path: str | os.PathLike, load_weights: bool = True) -> onnx.ModelProto:
    """The model at ``path``, or a one-line PrecisionError saying why it cannot be read;
    ``load_weights=False`` leaves external weight files unread (enough to look at the graph)."""
    path = Path(path)
    if not path.is_file():
        raise PrecisionError(f"{path} does not exist" if not path.exists() else f"{path} is not a file")
    try:
        return onnx.load(str(path), load_external_data=load_weights)
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


def gate_branches(model: onnx.ModelProto, gates: Sequence[str] = ("Softmax", "Sigmoid")) -> list[str]:
    """Names of the nodes that compute gates from pooled features, in graph order: from each ``gates``
    node backwards up to a pooling (ReduceMean / GlobalAveragePool, not included) on every path.

    TAM's kernel branch (pooled -> Linear -> BN -> ReLU -> Linear -> Softmax) and local branch
    (-> Conv1d ... -> Sigmoid), ACTION-Net's excitations (STE, CE, ME: -> Conv -> Sigmoid, pooled by
    the MatMuls of ``pooling_matmuls``) and SE
    layers are such branches: a few small layers whose output scales whole feature maps. Found from
    the graph's structure, so ``--tam-op plugin`` and ``onnx`` graphs give the same set; a gate whose
    ancestry reaches no pooling within ``_MAX_BRANCH`` nodes (a gate on full feature maps) is not one."""
    graph = model.graph
    producer = {out: n for n in graph.node for out in n.output}
    poolings = pooling_matmuls(model)
    found: set[str] = set()
    for gate in (n for n in graph.node if n.op_type in gates):
        branch: dict[str, onnx.NodeProto] = {}
        frontier = [gate]
        pooled = False
        while frontier and len(branch) < _MAX_BRANCH:
            node = frontier.pop()
            if node.op_type in _POOLING_OPS or node.name in poolings:
                pooled = True
            elif node.name not in branch:
                branch[node.name] = node
                frontier.extend(producer[i] for i in node.input if i in producer)
        if pooled and not frontier:
            found.update(branch)
    return [n.name for n in graph.node if n.name in found]


def pooling_matmuls(model: onnx.ModelProto) -> set[str]:
    """Names of the MatMuls that pool: against a constant ``exporters.action_stats`` recognises (ACTION-Net's
    channel mean and tap sums). They are poolings, not layers: never quantized, and they end a gate branch."""
    constants = {i.name: i for i in model.graph.initializer if not uses_external_data(i)}
    found = set()
    for node in model.graph.node:
        if node.op_type != "MatMul" or node.domain not in ("", "ai.onnx"):
            continue
        for side, name in enumerate(node.input[:2]):
            if name in constants and is_pooling_constant(numpy_helper.to_array(constants[name]), left=side == 0):
                found.add(node.name)
    return found


def tam_kernel_branch(model: onnx.ModelProto) -> list[str]:
    """TAM's kernel branch: the gate branches that end in its Softmax."""
    return gate_branches(model, ("Softmax",))
