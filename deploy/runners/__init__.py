"""One interface over PyTorch, ONNX Runtime and TensorRT (see ``base.Runner``).

Importing this package needs neither TensorRT nor CUDA: backends import their optional libraries
when a runner is activated.
"""

from tamdeploy.deploy.runners.base import Runner, TensorSpec, check_feed, random_feed
from tamdeploy.deploy.runners.factory import BACKENDS, backend_for, open_runner
from tamdeploy.deploy.runners.onnxruntime_runner import PROVIDERS, OnnxRuntimeRunner, available_providers
from tamdeploy.deploy.runners.tensorrt_runner import INSTALL_HINT, TensorRTRunner, import_tensorrt
from tamdeploy.deploy.runners.torch_runner import TorchRunner

__all__ = [
    "BACKENDS", "INSTALL_HINT", "PROVIDERS", "OnnxRuntimeRunner", "Runner", "TensorRTRunner", "TensorSpec",
    "TorchRunner", "available_providers", "backend_for", "check_feed", "import_tensorrt", "open_runner",
    "random_feed",
]
