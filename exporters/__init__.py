"""PyTorch network -> ONNX file, parity checked.

``export_checkpoint(ckpt)`` (``pipeline``) loads the checkpoint (``tamdeploy.models``) or your own
network (``user_model``), swaps TAM and ACTION-Net forwards for export-friendly ones while exporting
(``rewrites``, registered against the modules' structure, active only inside the export), exports with
a dynamic batch (``onnx_export``, per-input-kind settings in ``configs``), finishes the graph (``passes``:
the TAMAggregate function, simplification, checks), stamps tamdeploy's metadata (``metadata``) and runs
the ONNX model against the original on ONNX Runtime (``parity``, judged by ``tamdeploy.compare``).
Exporters never import ``tamdeploy.deploy``.
"""

from tamdeploy.lazy import lazy_attributes

# name -> module; imported on first use, because runners read ``metadata`` and must not pay for the
# exporter (torch.onnx, onnxscript: about a second) when they never export
_PUBLIC = {
    "ExportOptions": "onnx_export", "ExportResult": "onnx_export", "export_model": "onnx_export",
    "ModelMetadata": "metadata", "read_metadata": "metadata", "write_metadata": "metadata",
    "ParityResult": "parity", "check_export_parity": "parity", "export_checkpoint": "pipeline",
}
__all__ = sorted(_PUBLIC)

__getattr__ = lazy_attributes(__name__, _PUBLIC)
