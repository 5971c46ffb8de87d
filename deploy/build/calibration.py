"""INT8 calibration data: real clips through ``deploy.inputs`` (videos, frame folders, images, ``.npy``),
or random pixels when ``calib="random"`` asks for them explicitly (with a warning: ranges from noise
make a poor INT8 model, so it is only for trying the pipeline).

The clips are normalised with the model's mean/std and sampled with its T and size, which come from
the tamdeploy metadata in the ONNX file. An ONNX file without it can still be calibrated from
``.npy`` arrays (already normalised): the sample shape is then read from the graph's input.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from tamdeploy.console import warn
from tamdeploy.deploy.inputs.clips import ClipSpec, DataSummary, load_batch, random_clips
from tamdeploy.deploy.inputs.video import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS
from tamdeploy.errors import DataError

RANDOM = "random"
DEFAULT_SAMPLES = 64
# placeholders for a ClipSpec built from the graph alone: .npy arrays are used as they are
_UNUSED_MEAN, _UNUSED_STD = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)


@dataclass(frozen=True)
class CalibrationData:
    array: np.ndarray  # float32 [N, *sample_shape]
    sources: list[str]
    summary: DataSummary
    random: bool

    def to_dict(self) -> dict:
        return {"samples": int(self.array.shape[0]), "random": self.random, "files_used": len(self.summary.used),
                "skipped": self.summary.to_dict()["skipped"]}


def clip_spec_for(model: onnx.ModelProto) -> ClipSpec | None:
    """The model's ClipSpec from its tamdeploy metadata, or None for an ONNX file without it."""
    from tamdeploy.exporters.metadata import read_metadata

    meta = read_metadata(model)
    return ClipSpec.from_metadata(meta) if meta is not None else None


def _spec_from_graph(model: onnx.ModelProto) -> ClipSpec:
    """For .npy data into a model without metadata: [N, T, 3, S, S] or [N, 3, S, S] from the input."""
    inputs = {i.name for i in model.graph.initializer}
    graph_inputs = [i for i in model.graph.input if i.name not in inputs]
    if len(graph_inputs) != 1:
        raise DataError(f"the model has {len(graph_inputs)} inputs; calibration feeds models with one input")
    dims = [d.dim_value if d.HasField("dim_value") else None for d in graph_inputs[0].type.tensor_type.shape.dim]
    rest = dims[1:]
    if None in rest or len(rest) not in (3, 4) or rest[-3] != 3 or rest[-1] != rest[-2]:
        raise DataError(f"input '{graph_inputs[0].name}' has shape {dims}; without tamdeploy metadata only "
                        "[N, T, 3, S, S] or [N, 3, S, S] inputs with static T and S can be calibrated")
    return ClipSpec(rest[0] if len(rest) == 4 else None, rest[-1], _UNUSED_MEAN, _UNUSED_STD)


def load_calibration(calib: str | Path | None, model: onnx.ModelProto, samples: int | None = None,
                     progress: bool = True) -> CalibrationData:
    """``samples`` calibration clips for ``model`` from ``calib`` (a path, or ``"random"``); None takes up
    to ``DEFAULT_SAMPLES`` without complaining when there are fewer (only an explicit count that the data
    cannot fill is warned about)."""
    asked = samples is not None
    samples = samples if samples is not None else DEFAULT_SAMPLES
    if calib is None:
        raise DataError("`precision=int8` needs calibration data: `calib=PATH` (videos, frame folders, images or .npy "
                        "arrays, a few dozen clips like the ones the model will see); `calib=random` "
                        "uses random pixels, only to try the pipeline")
    if samples < 1:
        raise DataError(f"`calib_samples` must be at least 1, got {samples}")
    spec = clip_spec_for(model)
    if str(calib) == RANDOM:
        if spec is None:
            raise DataError("`calib=random` needs the model's input size and mean/std from tamdeploy "
                            "metadata, which this ONNX file lacks: give .npy arrays with --calib")
        warn(f"calibrating on {samples} clips of random pixels: the INT8 ranges will not fit real video and "
             "its accuracy will suffer; give real clips with --calib PATH")
        batch = random_clips(spec, samples)
        return CalibrationData(batch.array, batch.sources, batch.summary, random=True)
    path = Path(calib)
    if spec is None:
        files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
        if any(p.suffix.lower() in (*VIDEO_EXTENSIONS, *IMAGE_EXTENSIONS) for p in files):
            raise DataError(f"{path}: this ONNX file has no tamdeploy metadata (frames per clip, size, mean/std), "
                            "so videos and images cannot be prepared for it: give .npy arrays already "
                            "normalised, or export the model with 'tamdeploy export'")
        spec = _spec_from_graph(model)
    try:
        batch = load_batch(path, spec, samples, progress=progress, warn_short=asked)
    except DataError as e:
        raise DataError(f"calibration data: {e}") from e
    return CalibrationData(batch.array, batch.sources, batch.summary, random=False)
