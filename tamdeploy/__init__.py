"""tamdeploy: deploy SE / ACTION-Net / TANet networks to ONNX and TensorRT."""

__version__ = "0.1.0"

from tamdeploy import plugins as _plugins  # noqa: F401,E402  (registers torch.ops.tamdeploy.tam_aggregate)
