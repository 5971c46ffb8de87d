"""ONNX models that the oldest supported ONNX Runtime still loads.

``onnx.helper.make_model`` stamps the newest IR version the installed ``onnx`` knows (14 with onnx 1.23),
and ONNX Runtime refuses any IR version newer than its own (1.30 stops at 13, 1.20 at 10) even when the
graph uses nothing new. The IR version a model needs follows from its opsets, so we stamp that one.
"""

from __future__ import annotations

from collections.abc import Iterable

import onnx
from onnx import helper


def min_ir_version(opset_imports: Iterable[onnx.OperatorSetIdProto]) -> int:
    return helper.find_min_ir_version_for(list(opset_imports), ignore_unknown=True)


def with_min_ir_version(model: onnx.ModelProto) -> onnx.ModelProto:
    """Lower (never raise) ``model.ir_version`` to the least its opsets need; returns ``model``."""
    model.ir_version = min(model.ir_version, min_ir_version(model.opset_import))
    return model


def make_model(graph: onnx.GraphProto, opset: int = 18, **kwargs) -> onnx.ModelProto:
    """``helper.make_model`` with the default-domain ``opset`` (unless ``opset_imports`` is given) and the
    least IR version those opsets need."""
    kwargs.setdefault("opset_imports", [helper.make_opsetid("", opset)])
    return with_min_ir_version(helper.make_model(graph, **kwargs))
