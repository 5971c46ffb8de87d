"""One interface over PyTorch, ONNX Runtime, OpenVINO and TensorRT (see ``base.Runner``).

``open_runner(path)`` picks the backend from the file type (``factory``); every runner is a context
manager that checks its feed against the model's inputs before running it. ``trt`` and ``openvino_ir``
hold the TensorRT and OpenVINO plumbing that each runner shares with its builder. Importing this package
needs neither TensorRT, CUDA nor OpenVINO: backends import their optional libraries when activated.
"""

from tamdeploy.lazy import lazy_attributes

# name -> module, imported on first use: the ONNX Runtime and OpenVINO runners work without torch
_PUBLIC = {
    "Runner": "base", "TensorSpec": "base", "check_feed": "base", "random_feed": "base",
    "BACKENDS": "factory", "backend_for": "factory", "open_runner": "factory",
    "PROVIDERS": "onnxruntime_runner", "OnnxRuntimeRunner": "onnxruntime_runner",
    "available_providers": "onnxruntime_runner", "OpenVINORunner": "openvino_runner",
    "TensorRTRunner": "tensorrt_runner", "TorchRunner": "torch_runner",
    "INSTALL_HINT": "trt", "import_tensorrt": "trt",
}
__all__ = sorted(_PUBLIC)

__getattr__ = lazy_attributes(__name__, _PUBLIC)
