"""The TAMAggregate op's identity, as DESIGN.md's contract names it: ONNX domain, op type, opset version
and the TensorRT plugin namespace. The ONNX function (``tam_onnx``), the TensorRT plugin
(``trt_plugin``) and every pass that looks for the node in a graph (``tam_nodes``) read them here, so
the name is spelt once; importing this needs neither onnx nor TensorRT.
"""

from __future__ import annotations

from typing import Any

TAM_DOMAIN = "tamdeploy"
TAM_DOMAIN_VERSION = 1
TAM_OP_TYPE = "TAMAggregate"
TAM_PLUGIN_NAMESPACE = "tamdeploy"


def is_tam_node(node: Any) -> bool:
    """Whether an ONNX ``NodeProto`` is a TAMAggregate node."""
    return node.domain == TAM_DOMAIN and node.op_type == TAM_OP_TYPE


def tam_nodes(model: Any) -> list[Any]:
    """The TAMAggregate nodes of an ONNX ``ModelProto``'s main graph, in graph order."""
    return [node for node in model.graph.node if is_tam_node(node)]
