"""The TAM aggregation op in every runtime: PyTorch op, ONNX function, OpenVINO conversion, Triton kernel,
TensorRT plugin, one module each.

Nothing is imported here, so that the OpenVINO and ONNX Runtime paths (``tam_openvino``, ``contract``)
load without PyTorch. ``torch.ops.tamdeploy.tam_aggregate`` is registered by importing ``tam_op`` (or
by the first use of a name below), with the Triton kernel (``triton_tam``) as its CUDA implementation,
imported when a CUDA tensor first reaches the op; the TensorRT plugin (``trt_plugin``) registers on
demand; the ONNX side (``tam_onnx``) is imported only by whoever exports.
"""

from tamdeploy.lazy import lazy_attributes

_PUBLIC = {"TAMInputError": "contract", "tam_aggregate": "tam_op", "tam_aggregate_fused": "tam_op",
           "tam_aggregate_reference": "tam_reference"}
__all__ = list(_PUBLIC)

__getattr__ = lazy_attributes(__name__, _PUBLIC)
