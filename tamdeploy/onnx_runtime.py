"""The one place that opens an ONNX Runtime session: the runner, the export's parity check and the
INT8 sensitivity analysis all go through ``create_session``, so log level, threads, spinning and the
one-line load error are set the same way everywhere.

It lives in the ground package (not in ``deploy.runners``) because the exporters use it too, and
exporters never import ``deploy``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tamdeploy.errors import TamdeployError

CPU_PROVIDER = "CPUExecutionProvider"


def create_session(model: str | os.PathLike | bytes | Any, *, providers: Sequence[str] = (CPU_PROVIDER,),
                   threads: int | None = None, spin: bool | None = None) -> Any:
    """An ``onnxruntime.InferenceSession`` over ``model`` (a path, serialized bytes or a ModelProto).

    ``threads``: intra-op threads (None: ONNX Runtime's default, one per physical core); ``spin``:
    whether those threads busy-wait after a run (None: ONNX Runtime's default, on). Logs errors only:
    callers report problems themselves. A model ONNX Runtime cannot load is a ``TamdeployError``."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    if threads is not None:
        options.intra_op_num_threads = threads
    if spin is not None:
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    if hasattr(model, "SerializeToString"):
        model = model.SerializeToString()
    source = model if isinstance(model, bytes) else str(Path(model))
    try:
        return onnxruntime.InferenceSession(source, sess_options=options, providers=list(providers))
    except Exception as e:  # onnxruntime raises its own exception types, per failure kind
        where = "the model" if isinstance(model, bytes) else source
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TamdeployError(f"ONNX Runtime cannot load {where}: {first}") from e
