"""ONNX models that the oldest supported ONNX Runtime still loads.

``onnx.helper.make_model`` stamps the newest IR version the installed ``onnx`` knows (14 with onnx 1.23),
and ONNX Runtime refuses any IR version newer than its own (1.30 stops at 13, 1.20 at 10) even when the
graph uses nothing new. The IR version a model needs follows from its opsets, so we stamp that one.
"""

from __future__ import annotations

from collections.abc import Iterable

import onnx
from onnx import helper


def min_ir_version(opset_imports: Iterable[onnx.OperatorSetIdProto]) -> int | None:
    """The least IR version that ``opset_imports`` need; None when one of ONNX's own domains is at a
    version newer than the installed ``onnx`` knows (its table cannot say). Custom domains need nothing."""
    opsets = list(opset_imports)
    newest: dict[str, int] = {}
    for domain, version in helper.OP_SET_ID_VERSION_MAP:
        newest[domain] = max(version, newest.get(domain, 0))
    if any(o.version > newest.get(o.domain or "ai.onnx", o.version) for o in opsets):
        return None
    return helper.find_min_ir_version_for(opsets, ignore_unknown=True)


def with_min_ir_version(model: onnx.ModelProto) -> onnx.ModelProto:
    """Lower (never raise) ``model.ir_version`` to the least its opsets need; returns ``model``."""
    needed = min_ir_version(model.opset_import)
    if needed is not None:
        model.ir_version = min(model.ir_version, needed)
    return model


def copy_model(model: onnx.ModelProto) -> onnx.ModelProto:
    """A deep copy: passes that change a model in place get this, and the caller's model stays as it was."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    return copy


def make_model(graph: onnx.GraphProto, opset: int = 18, **kwargs) -> onnx.ModelProto:
    """``helper.make_model`` with the default-domain ``opset`` (unless ``opset_imports`` is given) and the
    least IR version those opsets need."""
    kwargs.setdefault("opset_imports", [helper.make_opsetid("", opset)])
    return with_min_ir_version(helper.make_model(graph, **kwargs))
