"""TensorRT engines (``.plan``): the slot in the runner interface.

Running engines is a later step; until then activation imports TensorRT (lazily, so that importing
tamdeploy never needs it) and says clearly what to use instead.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType

from tamdeploy import __version__
from tamdeploy.deploy.runners.base import Runner
from tamdeploy.errors import BackendUnavailableError

INSTALL_HINT = ('TensorRT is not installed: pip install "tamdeploy[tensorrt]" on a machine with an NVIDIA GPU; '
                "use --backend onnxruntime here")


def import_tensorrt() -> ModuleType:
    """The ``tensorrt`` module, or ``BackendUnavailableError`` with the install hint."""
    try:
        import tensorrt
    except ImportError as e:
        raise BackendUnavailableError(INSTALL_HINT) from e
    return tensorrt


class TensorRTRunner(Runner):
    """Runs a serialized TensorRT engine; ``threads`` does not apply (the GPU runs it)."""

    def __init__(self, engine: str | os.PathLike, *, threads: int | None = None) -> None:
        super().__init__("tensorrt", threads)
        self.engine_path = Path(engine)

    def activate_impl(self) -> None:
        trt = import_tensorrt()
        raise BackendUnavailableError(
            f"tamdeploy {__version__} cannot run TensorRT engines yet (TensorRT {trt.__version__} is installed): "
            f"run the .onnx model with --backend onnxruntime")
