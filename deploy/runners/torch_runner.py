"""PyTorch eager (optionally ``torch.compile``) on the CPU or a CUDA GPU."""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tamdeploy.deploy.runners.base import Runner, TensorSpec
from tamdeploy.errors import BackendUnavailableError, ModelConfigError
from tamdeploy.exporters.configs import export_config_for
from tamdeploy.models.config import ModelConfig

ModelLoader = Callable[[], tuple[nn.Module, ModelConfig]]


class TorchRunner(Runner):
    """Runs an ``nn.Module`` in eval mode under ``torch.inference_mode``.

    ``model`` is a module or a loader ``() -> (module, config)`` called at activation (so loading counts
    in ``load_seconds``). The input spec comes from the config (``config=``, the loader's, or the
    module's ``.config``): name ``video`` / ``image`` as in the exported ONNX, shape
    ``[?, *config.input_shape]``, float32; the output is ``logits``. ``infer`` takes and returns
    numpy arrays, so on CUDA its time includes the host <-> device copies. ``device`` is ``cpu`` or
    ``cuda`` (``cuda:N``); None picks CUDA where torch has a GPU, else the CPU. ``compile=True`` wraps the
    module in ``torch.compile``; compilation happens at the first inference of each new shape.
    ``threads`` sets ``torch.set_num_threads`` while active (process-wide; restored on exit).
    On CUDA the runner's precision, fp32, is IEEE fp32: TF32 convolutions and matmuls (PyTorch's default
    for cuDNN convolutions) are switched off while it is active and restored on exit: TF32 multiplies with
    10 mantissa bits, and this runner is the reference that parity at 1e-5 is measured against.
    """

    def __init__(self, model: nn.Module | ModelLoader, *, config: ModelConfig | None = None,
                 device: str | None = None, compile: bool = False, threads: int | None = None) -> None:
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        if self.device.type not in ("cpu", "cuda"):
            raise BackendUnavailableError(f"the PyTorch runner runs on 'cpu' or 'cuda', not {device!r}")
        name = "pytorch" + ("-cuda" if self.device.type == "cuda" else "") + ("-compile" if compile else "")
        super().__init__(name, threads)
        self._source = model
        self._given_config = config
        self.compile = compile
        self._module: nn.Module | None = None
        self._forward: Callable[[torch.Tensor], torch.Tensor] | None = None
        self._saved_threads: int | None = None
        self._restore_tf32: Callable[[], None] | None = None

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, *, arch: str | None = None, num_segments: int | None = None,
                        num_classes: int | None = None, input_size: int | None = None,
                        default_num_segments: int | None = None, trust_checkpoint: bool = False,
                        **options) -> TorchRunner:
        """A runner that loads ``path`` with ``tamdeploy.models.load_checkpoint`` when activated.

        A checkpoint does not record the input size unless it is tamdeploy's own format: pass
        ``input_size`` to match the ONNX model it is compared with; ``default_num_segments`` is the T to
        use where the weights do not fix one. ``options`` go to the constructor.
        """
        path = Path(path)

        def load() -> tuple[nn.Module, ModelConfig]:
            from tamdeploy.models import load_checkpoint

            loaded = load_checkpoint(path, arch=arch, num_segments=num_segments, num_classes=num_classes,
                                     default_num_segments=default_num_segments, trust_checkpoint=trust_checkpoint)
            config = loaded.config if input_size is None else replace(loaded.config, input_size=input_size)
            return loaded.model, config

        return cls(load, **options)

    @property
    def torch_cuda_device(self) -> torch.device | None:
        return self.device if self.device.type == "cuda" else None

    def activate_impl(self) -> None:
        if self.device.type == "cuda" and not torch.cuda.is_available():
            build = f"built with CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
            raise BackendUnavailableError(f"CUDA is not available here (torch {torch.__version__}, {build}, "
                                          f"no usable GPU): use device 'cpu'")
        if isinstance(self._source, nn.Module):
            module, config = self._source, None
            if not _all_on(module, self.device):  # leave the caller's module where it is
                module = copy.deepcopy(module)
        else:
            module, config = self._source()
        config = self._given_config or config or getattr(module, "config", None)
        if not isinstance(config, ModelConfig):
            raise ModelConfigError("the PyTorch runner needs the model's config (input size, frames per clip) "
                                   "to know its input: pass config=")
        self.config, self.precision = config, "fp32"
        self._module = module.eval().to(self.device)
        self._forward = torch.compile(self._module) if self.compile else self._module
        if self.threads is not None:
            self._saved_threads = torch.get_num_threads()
            torch.set_num_threads(self.threads)
        if self.device.type == "cuda":
            self._restore_tf32 = use_ieee_fp32()

    def input_specs_impl(self) -> Sequence[TensorSpec]:
        ecfg = export_config_for(self.config)
        return [TensorSpec(ecfg.input_name, (None, *self.config.input_shape), np.dtype(np.float32))]

    def output_names_impl(self) -> Sequence[str]:
        return [export_config_for(self.config).output_name]

    def infer_impl(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        (spec,) = self._inputs
        x = torch.from_numpy(feed[spec.name]).to(self.device)
        with torch.inference_mode():
            y = self._forward(x)
        return {self._outputs[0]: y.cpu().numpy()}

    def deactivate_impl(self) -> None:
        self._module = self._forward = None
        if self._saved_threads is not None:
            torch.set_num_threads(self._saved_threads)
            self._saved_threads = None
        if self._restore_tf32 is not None:
            self._restore_tf32()
            self._restore_tf32 = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


def use_ieee_fp32() -> Callable[[], None]:
    """Switch CUDA convolutions and matmuls to IEEE fp32 (no TF32); returns what restores the settings.

    PyTorch has two APIs for this, and once the per-op ``fp32_precision`` one has been written, reading
    the legacy ``cudnn.allow_tf32`` raises (models and libraries still read it). So the switch uses the
    legacy flags, which leave a state both can read, and the restore uses whichever API the process used.
    """
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    per_op = (cudnn.conv, cudnn.rnn, matmul)
    saved_per_op = [s.fp32_precision for s in per_op]
    try:
        saved_legacy: tuple[bool, bool] | None = (cudnn.allow_tf32, matmul.allow_tf32)
    except RuntimeError:  # set through the per-op API
        saved_legacy = None
    cudnn.allow_tf32 = matmul.allow_tf32 = False

    def restore() -> None:
        if saved_legacy is not None:
            cudnn.allow_tf32, matmul.allow_tf32 = saved_legacy
        else:
            for s, value in zip(per_op, saved_per_op, strict=True):
                s.fp32_precision = value

    return restore


def _all_on(module: nn.Module, device: torch.device) -> bool:
    tensors = [*module.parameters(), *module.buffers()]
    return all(t.device.type == device.type and (device.index is None or t.device.index == device.index)
               for t in tensors)
