"""tamdeploy: deploy SE / ACTION-Net / TANet networks to ONNX and TensorRT.

This package is the import root and the ground every other part stands on:
``errors`` (what a user can fix, exit 2), ``files`` (atomic writes, checks, hashes), ``console``
(results on stdout, messages and progress on stderr), ``compare`` (output comparison and the one
tolerance table), ``onnx_model`` (ONNX models the oldest supported runtime loads) and ``onnx_runtime``
(the one ONNX Runtime session factory). Above it: ``tamdeploy.models``, ``tamdeploy.plugins``,
``tamdeploy.exporters``, ``tamdeploy.deploy``, and ``tamdeploy.cli`` on top.
"""

__version__ = "0.1.0"

# Nothing is imported here: decode workers, the Triton models and the serving client import parts of
# tamdeploy on machines or in processes without PyTorch. ``torch.ops.tamdeploy.tam_aggregate`` is
# registered by ``import tamdeploy.plugins.tam_op`` (the exporter's rewrites import it themselves).

from tamdeploy.lazy import lazy_attributes  # noqa: E402

# The public API, imported on first use (the front door; the ground itself stays free of the wings):
# ``tamdeploy.Predictor("model.onnx").predict("clip.mp4")``, ``tamdeploy.evaluate([...], "val.txt")``.
_PUBLIC = {"Predictor": "tamdeploy.deploy.predict.predictor", "evaluate": "tamdeploy.deploy.predict.evaluate",
           "open_runner": "tamdeploy.deploy.runners.factory", "export_checkpoint": "tamdeploy.exporters.pipeline"}

__getattr__ = lazy_attributes(__name__, _PUBLIC)
