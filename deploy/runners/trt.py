"""TensorRT plumbing that the engine builder (``deploy.build.engine``) and the runner
(``tensorrt_runner``) share: importing TensorRT with the install hint, the no-CUDA hint, the GPU's
identity, a quiet logger, and the engine's JSON sidecar (where it lives, reading it, refusing an
engine built for another TensorRT version or GPU, or a plan that is not the one the sidecar describes).

The plan and its sidecar are two files, each replaced atomically but not together: a build
interrupted between the two renames leaves a new plan beside the old sidecar (another TAM mode,
precision or profile). So the sidecar records the plan's size and sha256, and ``check_plan``
refuses a plan that does not match them.

Importing this module needs neither TensorRT nor CUDA: both are imported inside the functions.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from tamdeploy.deploy.runners.sidecar import read_sidecar_file, sidecar_path
from tamdeploy.errors import BackendUnavailableError, TamdeployError

SIDECAR_FORMAT = "tamdeploy-tensorrt-engine"
SIDECAR_VERSION = 2  # 2: the plan's size and sha256 (``engine``)
# what the runner reads from the sidecar, and the JSON type each must have
SIDECAR_FIELDS = {"tensorrt_version": str, "gpu": dict, "onnx": dict, "engine": dict, "precision": str,
                  "tam_op": str, "config": dict}


def tensorrt_missing(instead: str) -> str:
    """The one-line error when TensorRT cannot be imported, ending with what works here instead."""
    return f'TensorRT is not installed: pip install "tamdeploy[tensorrt]" on a machine with an NVIDIA GPU; {instead}'


def cuda_missing(what: str, instead: str) -> str:
    """The one-line error when TensorRT is installed but there is no GPU to use it on."""
    return (f"CUDA is not available here (no NVIDIA GPU, driver or CUDA build of torch): TensorRT engines {what} "
            f"on NVIDIA GPUs; {instead}")


INSTALL_HINT = tensorrt_missing("use `backend=onnxruntime` here")
NO_CUDA_HINT = cuda_missing("run", "use `backend=onnxruntime` here")
BUILD_INSTALL_HINT = tensorrt_missing("`target=onnxruntime` works here")
BUILD_NO_CUDA_HINT = cuda_missing("are built and run", "`target=onnxruntime` works here")


def import_tensorrt(install_hint: str = INSTALL_HINT) -> ModuleType:
    """The ``tensorrt`` module, or ``BackendUnavailableError`` with the install hint."""
    try:
        import tensorrt
    except ImportError as e:
        raise BackendUnavailableError(install_hint) from e
    return tensorrt


def import_tensorrt_with_cuda(*, build: bool = False) -> ModuleType:
    """``tensorrt`` with a usable CUDA GPU, or a ``BackendUnavailableError`` that says which is missing
    (``build``: the hints speak of building engines rather than running them)."""
    trt = import_tensorrt(BUILD_INSTALL_HINT if build else INSTALL_HINT)
    import torch

    if not torch.cuda.is_available():
        raise BackendUnavailableError(BUILD_NO_CUDA_HINT if build else NO_CUDA_HINT)
    return trt


def gpu_identity(device: int | None = None) -> tuple[str, str]:
    """(name, compute capability "major.minor") of a CUDA device (default: the current one)."""
    import torch

    index = torch.cuda.current_device() if device is None else device
    major, minor = torch.cuda.get_device_capability(index)
    return torch.cuda.get_device_name(index), f"{major}.{minor}"


def make_logger(trt: Any, echo_errors: bool = False) -> Any:
    """An ``ILogger`` that keeps warnings and errors (for messages and the result), drops the rest."""

    class Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []
            self.warnings: list[str] = []

        def log(self, severity: Any, msg: str) -> None:
            if severity in (trt.ILogger.Severity.INTERNAL_ERROR, trt.ILogger.Severity.ERROR):
                self.errors.append(msg)
            elif severity == trt.ILogger.Severity.WARNING and msg not in self.warnings:
                self.warnings.append(msg)

    return Logger()


class EngineMismatchError(TamdeployError):
    """An engine built for another TensorRT version or GPU, whose sidecar is damaged, or that is not
    the plan its sidecar describes."""


def read_sidecar(engine_path: str | Path) -> dict | None:
    """The engine's sidecar, or None when there is none (one tamdeploy did not build)."""
    return read_sidecar_file(engine_path, SIDECAR_FORMAT, "engine", EngineMismatchError, SIDECAR_FIELDS)


def gpu_label(name: str | None, capability: str | None) -> str:
    cc = f"sm_{capability.replace('.', '')}" if capability else "unknown compute capability"
    return f"{name or 'an unknown GPU'} ({cc})"


def check_sidecar(sidecar: Mapping[str, Any], engine_path: str | Path, *, tensorrt_version: str, gpu_name: str,
                  compute_capability: str) -> None:
    """Raise ``EngineMismatchError`` unless the engine was built with this TensorRT on this GPU model.

    TensorRT engines are specific to the TensorRT version and the GPU they were built on; loading
    one elsewhere fails deep inside TensorRT, or runs tactics tuned for another device."""
    engine_path = Path(engine_path)
    built_trt = sidecar.get("tensorrt_version")
    gpu = sidecar.get("gpu") or {}
    built = []
    here = []
    if built_trt != tensorrt_version:
        built.append(f"TensorRT {built_trt}")
        here.append(f"TensorRT {tensorrt_version}")
    if gpu.get("name") != gpu_name or gpu.get("compute_capability") != compute_capability:
        built.append(gpu_label(gpu.get("name"), gpu.get("compute_capability")))
        here.append(gpu_label(gpu_name, compute_capability))
    if built:
        source = (sidecar.get("onnx") or {}).get("path") or "the .onnx model"
        raise EngineMismatchError(
            f"{engine_path.name} was built for {' on '.join(built)}; this machine has {' on '.join(here)}: "
            f"engines run only where they were built, rebuild it here with 'tamdeploy build {source}'")


def plan_record(plan: bytes) -> dict:
    """What the sidecar records of the plan it describes (``engine``): its size and sha256."""
    return {"bytes": len(plan), "sha256": hashlib.sha256(plan).hexdigest()}


def check_plan(sidecar: Mapping[str, Any], engine_path: str | Path, plan: bytes) -> None:
    """Raise ``EngineMismatchError`` unless ``plan`` (the bytes read from ``engine_path``) is the plan
    the sidecar was written for: a plan and sidecar of two builds describe different engines, and
    the runner would trust the sidecar's TAM mode, precision and profile for the wrong one."""
    engine_path = Path(engine_path)
    recorded = sidecar.get("engine")
    source = (sidecar.get("onnx") or {}).get("path") or "the .onnx model"
    if not isinstance(recorded, Mapping) or not {"bytes", "sha256"} <= recorded.keys():
        raise EngineMismatchError(f"{sidecar_path(engine_path).name} does not record the engine's sha256 (written by "
                                  f"an older tamdeploy): rebuild with 'tamdeploy build {source}'")
    actual = plan_record(plan)
    if (recorded["bytes"], recorded["sha256"]) != (actual["bytes"], actual["sha256"]):
        raise EngineMismatchError(
            f"{engine_path.name} ({len(plan)} bytes) is not the engine its sidecar describes ({recorded['bytes']} "
            f"bytes, another sha256): the engine and its sidecar were not written together (an interrupted "
            f"build?): rebuild with 'tamdeploy build {source}'")
