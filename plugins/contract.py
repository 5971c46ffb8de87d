"""The TAMAggregate op's identity, as DESIGN.md's contract names it: ONNX domain, op type, opset version
and the TensorRT plugin namespace. The ONNX function (``tam_onnx``), the TensorRT plugin
(``trt_plugin``) and every pass that looks for the node in a graph (``tam_nodes``) read them here, so
the name is spelt once; importing this needs neither onnx nor TensorRT nor PyTorch. ``check_tam_inputs``
is the contract's shapes and dtypes for the PyTorch op and the Triton kernel.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tamdeploy.errors import TamdeployError

if TYPE_CHECKING:
    import torch

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


class TAMInputError(TamdeployError, ValueError):
    """Tensors that do not follow the TAM aggregation contract (ranks, N/T/C, odd K, dtypes)."""


def check_tam_inputs(x: torch.Tensor, kernel: torch.Tensor, local: torch.Tensor) -> None:
    """Raise TAMInputError unless x [N*T, C, H, W], kernel [N, C, K] and local [N, C, T] fit together."""
    for name, tensor, rank, layout in (
        ("x", x, 4, "[N*T, C, H, W]"),
        ("kernel", kernel, 3, "[N, C, K]"),
        ("local", local, 3, "[N, C, T]"),
    ):
        if tensor.dim() != rank:
            raise TAMInputError(f"TAM {name} must be {layout}, got shape {tuple(tensor.shape)}")
    n, c, k = kernel.shape
    t = local.shape[-1]
    if local.shape[0] != n or local.shape[1] != c:
        raise TAMInputError(f"TAM local {tuple(local.shape)} and kernel {tuple(kernel.shape)} disagree on N or C")
    if x.shape[1] != c or x.shape[0] != n * t:
        raise TAMInputError(
            f"TAM x {tuple(x.shape)} must be [N*T, C, H, W] = [{n}*{t}, {c}, H, W] (N, C from kernel, T from local)"
        )
    if k % 2 == 0:
        raise TAMInputError(f"TAM kernel size K must be odd, got K={k}")
    if not x.is_floating_point() or not x.dtype == kernel.dtype == local.dtype:
        raise TAMInputError(
            f"TAM inputs must share one floating dtype, got x {x.dtype}, kernel {kernel.dtype}, local {local.dtype}"
        )
    if not x.device == kernel.device == local.device:
        raise TAMInputError(
            f"TAM inputs must be on one device, got x {x.device}, kernel {kernel.device}, local {local.device}"
        )
