"""The runner interface, after Polygraphy's ``BaseRunner``.

A runner wraps one backend (PyTorch, ONNX Runtime, TensorRT) behind the same few calls:

- it is a context manager: ``__enter__`` activates it (loads the model, allocates, creates the
  session; the time this takes is ``load_seconds``) and ``__exit__`` frees what activation took;
- ``input_specs()`` / ``output_names`` describe its I/O once active;
- ``infer(feed)`` checks the feed against the input specs (names, rank, static dimensions, dtype)
  with a clear ``DataError`` and only then calls the backend's ``infer_impl()``.

Backends implement the ``*_impl`` hooks. Optional libraries are imported inside the hooks, so
importing this package needs neither TensorRT nor CUDA.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from tamdeploy.errors import DataError, TamdeployError
from tamdeploy.models.config import ModelConfig

if TYPE_CHECKING:
    import torch

R = TypeVar("R", bound="Runner")


@dataclass(frozen=True)
class TensorSpec:
    """One model input: ``None`` in ``shape`` marks a dynamic dimension (the batch, usually)."""

    name: str
    shape: tuple[int | None, ...]
    dtype: np.dtype

    def shape_str(self) -> str:
        return "[" + ", ".join("?" if d is None else str(d) for d in self.shape) + "]"

    def describe(self) -> str:
        return f"'{self.name}' {np.dtype(self.dtype).name}{self.shape_str()}"

    def to_dict(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": np.dtype(self.dtype).name}


class Runner(ABC):
    """Base class of the backends. Subclasses set ``name`` and implement the ``*_impl`` hooks:

    - ``activate_impl()``: load / allocate; may set ``config`` and ``precision``;
    - ``input_specs_impl()`` / ``output_names_impl()``: the I/O, called once right after activation;
    - ``infer_impl(feed)``: run a feed that ``infer`` has already checked;
    - ``deactivate_impl()``: free what activation took.
    """

    def __init__(self, name: str, threads: int | None = None) -> None:
        if threads is not None and threads < 1:  # every backend: 0 would mean "the default" to some of them
            raise TamdeployError(f"`threads` must be at least 1, got {threads}")
        self.name = name
        self.threads = threads  # intra-op threads the backend uses; None: the backend's default
        self.config: ModelConfig | None = None  # known from the checkpoint or the ONNX metadata
        self.precision: str | None = None  # "fp32" | "fp16" | "int8" where known
        self.load_seconds: float | None = None
        self.is_active = False
        self._inputs: tuple[TensorSpec, ...] = ()
        self._outputs: tuple[str, ...] = ()

    # --- lifecycle -------------------------------------------------------------------------------

    def activate(self: R) -> R:
        if self.is_active:
            raise RuntimeError(f"the {self.name} runner is already active")
        started = time.perf_counter()
        self.activate_impl()
        try:
            self._inputs = tuple(self.input_specs_impl())
            self._outputs = tuple(self.output_names_impl())
        except BaseException:
            self.deactivate_impl()
            raise
        self.load_seconds = time.perf_counter() - started
        self.is_active = True
        return self

    def deactivate(self) -> None:
        if not self.is_active:
            return
        self.is_active = False
        self._inputs, self._outputs = (), ()
        self.deactivate_impl()

    def __enter__(self: R) -> R:
        return self.activate()

    def __exit__(self, *exc_info: object) -> None:
        self.deactivate()

    # --- I/O -------------------------------------------------------------------------------------

    def input_specs(self) -> list[TensorSpec]:
        self._require_active("input_specs()")
        return list(self._inputs)

    @property
    def output_names(self) -> list[str]:
        self._require_active("output_names")
        return list(self._outputs)

    @property
    def input_name(self) -> str:
        """The first input's name (our models have one input)."""
        return self.input_specs()[0].name

    @property
    def input_shape(self) -> tuple[int | None, ...]:
        """The first input's shape, ``None`` for dynamic dimensions."""
        return self.input_specs()[0].shape

    @property
    def frames_per_clip(self) -> int:
        """T for video models (from the config, else the NTCHW input), 1 for image models."""
        if self.config is not None:
            return self.config.num_segments or 1
        shape = self.input_shape
        return shape[1] if len(shape) == 5 and shape[1] is not None else 1

    def infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one feed: ``{input name: array}`` -> ``{output name: array}``."""
        self._require_active("infer()")
        check_feed(feed, self._inputs, self.name)
        return self.infer_impl(feed)

    def _require_active(self, what: str) -> None:
        if not self.is_active:
            raise RuntimeError(f"the {self.name} runner is not active: call {what} inside 'with runner:' "
                               f"(or after runner.activate())")

    # --- backend hooks ---------------------------------------------------------------------------

    @abstractmethod
    def activate_impl(self) -> None:
        """Backend hook; see the class docstring."""

    @abstractmethod
    def input_specs_impl(self) -> Sequence[TensorSpec]:
        """Backend hook; see the class docstring."""

    @abstractmethod
    def output_names_impl(self) -> Sequence[str]:
        """Backend hook; see the class docstring."""

    @abstractmethod
    def infer_impl(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Backend hook; see the class docstring."""

    @abstractmethod
    def deactivate_impl(self) -> None:
        """Backend hook; see the class docstring."""

    @property
    def torch_cuda_device(self) -> torch.device | None:
        """The CUDA device whose torch allocator this runner uses (the bench reads its peak), else None."""
        return None

    @property
    def settings(self) -> dict[str, Any]:
        """How the backend runs the model, for reports, once active (OpenVINO: performance hint, streams,
        inference precision, cache); empty where there is nothing beyond the name, precision and threads."""
        return {}

    def share_cpu(self) -> str | None:
        """Called before activation when another runner takes turns with this one and nothing is timed
        (verify against the PyTorch reference). A backend whose threads busy-wait after a call for the
        next one turns that off here, so they do not take the CPU from the other runner; it returns a
        note saying what it changed, or None (the default: nothing to change). The bench does not call
        it: runners keep what a deployment gets, and calls are paused apart instead."""
        return None

    def __repr__(self) -> str:
        state = "active" if self.is_active else "inactive"
        return f"<{type(self).__name__} {self.name} ({state})>"


def check_feed(feed: Mapping[str, np.ndarray], specs: Sequence[TensorSpec], runner: str) -> None:
    """Raise ``DataError`` unless ``feed`` has exactly the inputs in ``specs``, each a numpy array of
    the right dtype, rank and static dimensions."""
    takes = ", ".join(s.describe() for s in specs)
    names = {s.name for s in specs}
    extra = sorted(set(feed) - names)
    if extra:
        raise DataError(f"{runner}: unexpected input(s) {', '.join(map(repr, extra))}; the model takes {takes}")
    for spec in specs:
        if spec.name not in feed:
            raise DataError(f"{runner}: input '{spec.name}' is missing from the feed; the model takes {takes}")
        array = feed[spec.name]
        if not isinstance(array, np.ndarray):
            raise DataError(f"{runner}: input '{spec.name}' must be a numpy array, got {type(array).__name__}")
        want = np.dtype(spec.dtype)
        if array.dtype != want:
            raise DataError(f"{runner}: input '{spec.name}' is {array.dtype.name}; the model takes {want.name} "
                            f"(convert with .astype(np.{want.name}))")
        if array.ndim != len(spec.shape):
            raise DataError(f"{runner}: input '{spec.name}' has {array.ndim} dimensions {list(array.shape)}; "
                            f"the model takes {len(spec.shape)}: {spec.shape_str()}")
        for axis, (got, need) in enumerate(zip(array.shape, spec.shape, strict=True)):
            if need is not None and got != need:
                raise DataError(f"{runner}: input '{spec.name}' has shape {list(array.shape)}; dimension {axis} "
                                f"must be {need} (the model takes {spec.shape_str()})")


def random_feed(specs: Sequence[TensorSpec], batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A standard-normal feed with ``batch`` for the leading dynamic dimension, reproducible by seed."""
    rng = np.random.default_rng(seed)
    feed = {}
    for spec in specs:
        dtype = np.dtype(spec.dtype)
        if dtype.kind != "f":
            raise DataError(f"cannot make a random input for {spec.describe()}: only float inputs are generated; "
                            f"pass the inputs yourself")
        if not spec.shape:
            raise DataError(f"cannot make a random input for {spec.describe()}: a scalar has no batch axis")
        if spec.shape[0] is not None and spec.shape[0] != batch:
            raise DataError(f"input {spec.describe()} has a fixed batch of {spec.shape[0]}; "
                            f"run it with batch {spec.shape[0]} only")
        if any(d is None for d in spec.shape[1:]):
            raise DataError(f"cannot make a random input for {spec.describe()}: only the batch may be dynamic")
        shape = (batch, *spec.shape[1:])
        feed[spec.name] = rng.standard_normal(shape, dtype=np.float32).astype(dtype, copy=False)
    return feed
