"""The TAM aggregation op in every runtime: PyTorch op (registered on import), ONNX function.

Importing this package registers ``torch.ops.tamdeploy.tam_aggregate``, with the Triton kernel as its
CUDA implementation (``triton_tam``: Triton is imported only when a CUDA tensor reaches the op); the
TensorRT plugin (``trt_plugin``) registers on demand. The ONNX side lives in
``tamdeploy.plugins.tam_onnx`` and is imported only by whoever exports, so that ``import tamdeploy``
stays free of onnx and onnxscript.
"""

from tamdeploy.plugins.tam_op import TAMInputError, tam_aggregate, tam_aggregate_fused
from tamdeploy.plugins.tam_reference import tam_aggregate_reference
from tamdeploy.plugins.triton_tam import register_cuda_kernel

register_cuda_kernel()

__all__ = ["TAMInputError", "tam_aggregate", "tam_aggregate_fused", "tam_aggregate_reference"]
