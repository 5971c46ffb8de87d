"""Graph passes after export: attach or inline the TAM function, simplify (onnxslim), check."""

from __future__ import annotations

import onnx

from tamdeploy.errors import ExportError
from tamdeploy.onnx_model import with_min_ir_version
from tamdeploy.plugins.tam_onnx import add_tam_function, inline_tam_functions


def simplify(model: onnx.ModelProto) -> onnx.ModelProto:
    import onnxslim

    return onnxslim.slim(model)


def check_graph(model: onnx.ModelProto) -> None:
    """onnx.checker plus strict shape inference: what runtimes would reject, we reject first."""
    try:
        onnx.checker.check_model(model, full_check=True)
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise ExportError(f"exported graph failed ONNX checks: {str(e).splitlines()[0]}") from e


def finalize_graph(model: onnx.ModelProto, inline_tam: bool, simplify_graph: bool = True) -> onnx.ModelProto:
    # the exporter inlines local functions, so the TAM function is attached only now
    model = inline_tam_functions(model) if inline_tam else add_tam_function(model)
    if simplify_graph:
        model = simplify(model)
    # the exporter stamps its own onnx's IR version; older ONNX Runtimes refuse one newer than theirs
    with_min_ir_version(model)
    check_graph(model)
    return model
