"""ONNX Runtime: the CPU execution provider, and the CUDA / TensorRT ones where onnxruntime-gpu has them."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from tamdeploy.deploy.runners.base import Runner, TensorSpec
from tamdeploy.errors import BackendUnavailableError, TamdeployError
from tamdeploy.exporters.metadata import ModelMetadata, metadata_from_props
from tamdeploy.onnx_runtime import create_session

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
             "tensorrt": "TensorrtExecutionProvider"}
_SHORT = {full: short for short, full in PROVIDERS.items()}
# ONNX Runtime's element type names that differ from numpy's
_ORT_TYPES = {"float": "float32", "double": "float64"}


def available_providers() -> list[str]:
    import onnxruntime

    return list(onnxruntime.get_available_providers())


def resolve_providers(providers: Sequence[str] | None) -> list[str]:
    """Full provider names, CPU last as the fallback for nodes the others do not run.

    ``None`` picks CUDA where this onnxruntime has it, else the CPU. Short names: cpu, cuda, tensorrt.
    """
    available = available_providers()
    if providers is None:
        providers = ["cuda"] if PROVIDERS["cuda"] in available else ["cpu"]
    if not providers:
        raise TamdeployError("providers is empty: name at least one of " + ", ".join(PROVIDERS))
    full = [PROVIDERS.get(p.lower(), p) for p in providers]
    for asked, name in zip(providers, full, strict=True):
        if name in available:
            continue
        if name in PROVIDERS.values():
            raise BackendUnavailableError(
                f"ONNX Runtime here offers {', '.join(available)}, not {name}: it needs onnxruntime-gpu "
                f"(pip install onnxruntime-gpu) on a machine with an NVIDIA GPU; use providers=['cpu']")
        raise TamdeployError(f"unknown ONNX Runtime provider {asked!r}; use one of {', '.join(PROVIDERS)} "
                             f"or a full name from: {', '.join(available)}")
    if PROVIDERS["cpu"] not in full:
        full.append(PROVIDERS["cpu"])
    return full


class OnnxRuntimeRunner(Runner):
    """Runs an ONNX model (a path or the serialized bytes) in an ``onnxruntime.InferenceSession``.

    ``providers`` (short or full names) choose the execution providers; the runner's name follows the
    first: ``onnxruntime-cpu``, ``onnxruntime-cuda``, ``onnxruntime-tensorrt``. ``threads`` is the
    session's intra-op thread count (None: ONNX Runtime's default, one per physical core). ``spin``:
    whether those threads busy-wait for work after a run (None: ONNX Runtime's default, on). ``config``
    and ``precision`` come from the tamdeploy metadata in the file, when it has them (``metadata``).
    """

    def __init__(self, model: str | os.PathLike | bytes, *, providers: Sequence[str] | None = None,
                 threads: int | None = None, spin: bool | None = None) -> None:
        self.providers = resolve_providers(providers)
        super().__init__("onnxruntime-" + _SHORT.get(self.providers[0], self.providers[0].lower()), threads)
        self._model = model if isinstance(model, bytes) else Path(model)
        self.spin = spin
        self.metadata: ModelMetadata | None = None
        self._session = None

    def activate_impl(self) -> None:
        session = create_session(self._model, providers=self.providers, threads=self.threads, spin=self.spin)
        if self.providers[0] not in session.get_providers():
            raise BackendUnavailableError(f"ONNX Runtime could not start {self.providers[0]} here (it fell back "
                                          f"to {', '.join(session.get_providers())}); check the CUDA install")
        self.metadata = metadata_from_props(session.get_modelmeta().custom_metadata_map)
        if self.metadata is not None:
            self.config, self.precision = self.metadata.config, self.metadata.precision
        self._session = session

    def share_cpu(self) -> str | None:
        if self.spin is not None:
            return None
        self.spin = False
        return "intra-op threads do not spin between runs (they would take the CPU from the next runner)"

    def input_specs_impl(self) -> Sequence[TensorSpec]:
        return [TensorSpec(i.name, tuple(d if isinstance(d, int) else None for d in i.shape), _dtype(i.name, i.type))
                for i in self._session.get_inputs()]

    def output_names_impl(self) -> Sequence[str]:
        return [o.name for o in self._session.get_outputs()]

    def infer_impl(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = self._session.run(self._outputs, dict(feed))
        return dict(zip(self._outputs, outputs, strict=True))

    def deactivate_impl(self) -> None:
        self._session = None


def _dtype(name: str, ort_type: str) -> np.dtype:
    element = ort_type.removeprefix("tensor(").removesuffix(")")
    try:
        return np.dtype(_ORT_TYPES.get(element, element))
    except TypeError:
        raise TamdeployError(f"input '{name}' is {ort_type}, which the ONNX Runtime runner cannot feed "
                             f"from numpy") from None
