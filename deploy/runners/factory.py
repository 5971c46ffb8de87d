"""``open_runner``: the runner an artifact needs, chosen by its suffix."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tamdeploy.deploy.runners.base import Runner
from tamdeploy.deploy.runners.onnxruntime_runner import OnnxRuntimeRunner
from tamdeploy.deploy.runners.openvino_runner import IR_SUFFIXES, OpenVINORunner
from tamdeploy.errors import TamdeployError
from tamdeploy.models.checkpoint_files import CHECKPOINT_SUFFIXES, is_checkpoint_file

ONNX_SUFFIXES = (".onnx",)
ENGINE_SUFFIXES = (".plan", ".engine")
BACKENDS = ("pytorch", "onnxruntime", "openvino", "tensorrt")
# backends that run an artifact besides its own (OpenVINO reads tamdeploy's ONNX files as they are)
ALSO_RUNS = {"onnxruntime": ("openvino",)}

# the options each backend's runner takes
_OPTIONS = {
    "pytorch": {"device", "compile", "threads", "arch", "num_segments", "default_num_segments", "num_classes",
                "input_size", "trust_checkpoint"},
    "onnxruntime": {"providers", "threads", "spin"},
    "openvino": {"precision", "performance", "streams", "threads", "cache_dir"},
    "tensorrt": {"threads", "cuda_graph", "device"},
}


def backend_for(artifact: str | os.PathLike) -> str:
    """The backend that runs ``artifact``, from its suffix."""
    suffix = Path(artifact).suffix.lower()
    if suffix in ONNX_SUFFIXES:
        return "onnxruntime"
    if suffix in ENGINE_SUFFIXES:
        return "tensorrt"
    if suffix in IR_SUFFIXES:
        return "openvino"
    if is_checkpoint_file(artifact):
        return "pytorch"
    known = ", ".join(CHECKPOINT_SUFFIXES + ONNX_SUFFIXES + IR_SUFFIXES + ENGINE_SUFFIXES)
    raise TamdeployError(f"cannot tell how to run {artifact}: unknown suffix {suffix or '(none)'!r}; "
                         f"expected one of {known}")


def open_runner(artifact: str | os.PathLike, backend: str | None = None, **opts: Any) -> Runner:
    """An inactive runner for ``artifact``: a checkpoint (``.pt/.pth/.ckpt/.pth.tar``, or any name whose
    content is one: ``is_checkpoint_file``) -> PyTorch (``load_checkpoint``),
    ``.onnx`` -> ONNX Runtime (or OpenVINO with ``backend="openvino"``), ``.xml`` -> OpenVINO (an IR),
    ``.plan/.engine`` -> TensorRT.

    ``backend`` (pytorch, onnxruntime, openvino, tensorrt) must be one that runs the artifact. ``opts`` are
    the runner's options; None values are ignored, and an option the runner does not take is an error.
    """
    path = Path(artifact)
    native = backend_for(path)
    if backend is not None and backend not in BACKENDS:
        raise TamdeployError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
    if backend is not None and backend != native and backend not in ALSO_RUNS.get(native, ()):
        raise TamdeployError(_mismatch(path, native, backend))
    backend = backend or native
    if not path.is_file():
        raise TamdeployError(f"{path} does not exist" if not path.exists() else f"{path} is not a file")
    allowed = _OPTIONS[backend]
    opts = {k: v for k, v in opts.items() if v is not None}
    unknown = sorted(set(opts) - allowed)
    if unknown:
        raise TamdeployError(f"option(s) {', '.join(unknown)} do not apply to the {backend} runner ({path.name}); "
                             f"it takes {', '.join(sorted(allowed))}")
    if backend == "pytorch":  # torch and TensorRT's runner import torch: only when asked for
        from tamdeploy.deploy.runners.torch_runner import TorchRunner

        return TorchRunner.from_checkpoint(path, **opts)
    if backend == "onnxruntime":
        return OnnxRuntimeRunner(path, **opts)
    if backend == "openvino":
        return OpenVINORunner(path, **opts)
    from tamdeploy.deploy.runners.tensorrt_runner import TensorRTRunner

    return TensorRTRunner(path, **opts)


def _mismatch(path: Path, native: str, backend: str) -> str:
    if native == "onnxruntime" and backend == "tensorrt":
        return (f"{path.name} is an ONNX model: build a TensorRT engine from it first (tamdeploy build "
                f"{path.name} --target tensorrt), then run the .plan")
    if native == "pytorch":
        return (f"{path.name} is a checkpoint, which runs on pytorch: export it to ONNX first "
                f"(tamdeploy export {path.name}) to run it on {backend}")
    if native == "onnxruntime":
        return (f"{path.name} is an ONNX model, which runs on onnxruntime or openvino: for pytorch, pass the "
                f"checkpoint")
    if native == "openvino":
        return f"{path.name} is an OpenVINO IR, which runs only on openvino"
    return f"{path.name} is a TensorRT engine, which runs only on tensorrt"
