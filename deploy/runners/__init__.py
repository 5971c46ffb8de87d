"""One interface over PyTorch, ONNX Runtime, OpenVINO and TensorRT (see ``base.Runner``).

``open_runner(path)`` picks the backend from the file type (``factory``); every runner is a context
manager that checks its feed against the model's inputs before running it. ``trt`` and ``openvino_ir``
hold the TensorRT and OpenVINO plumbing that each runner shares with its builder. Importing this package
needs neither TensorRT, CUDA nor OpenVINO: backends import their optional libraries when activated.
"""

from tamdeploy.deploy.runners.base import Runner, TensorSpec, check_feed, random_feed
from tamdeploy.deploy.runners.factory import BACKENDS, backend_for, open_runner
from tamdeploy.deploy.runners.onnxruntime_runner import PROVIDERS, OnnxRuntimeRunner, available_providers
from tamdeploy.deploy.runners.openvino_runner import OpenVINORunner
from tamdeploy.deploy.runners.tensorrt_runner import TensorRTRunner
from tamdeploy.deploy.runners.torch_runner import TorchRunner
from tamdeploy.deploy.runners.trt import INSTALL_HINT, import_tensorrt

__all__ = [
    "BACKENDS", "INSTALL_HINT", "PROVIDERS", "OnnxRuntimeRunner", "OpenVINORunner", "Runner", "TensorRTRunner",
    "TensorSpec", "TorchRunner", "available_providers", "backend_for", "check_feed", "import_tensorrt", "open_runner",
    "random_feed",
]
