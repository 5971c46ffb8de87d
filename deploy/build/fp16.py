"""FP16 graphs: precision lives in the ONNX graph.

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

from collections.abc import Sequence
from dataclasses import dataclass

import onnx

from tamdeploy.deploy.build.graph import check_precision_graph, set_precision_metadata, topological_sort
from tamdeploy.onnx_model import copy_model

# Op types kept in FP32 besides the converter's defaults: none, by measurement (module doc).
FP16_BLOCK_OPS: tuple[str, ...] = ()


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
