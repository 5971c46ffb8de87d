"""A synthetic video dataset whose label is the direction a square moves (right, left, down, up), and a
tiny trainer, for accuracy tests that mean something on a CPU in seconds.

A single frame cannot tell the class: the square starts anywhere that keeps its whole path inside
the centre crop, so over a clip's frames its positions have the same distribution for every
direction; only the order of the frames does. A TSN without temporal modelling is at chance here
(``frame_order_matters`` checks that with the frames shuffled); TANet's TAM and ACTION-Net's
shift/excitation learn it.

Clips are rendered as uint8 RGB frames, written as real H.264 mp4 files with PyAV
(``synthetic_video.write_video``), and read back through ``tamdeploy.deploy.data`` for evaluation
and calibration: label = class name in the file name. Training uses frames rendered on the fly
and passed through the same resize + centre crop + normalisation as decoding (``FrameTransform``,
``ClipSpec.normalise``), without the codec round trip: writing and decoding ~10 ms a clip would
cost more than the training itself.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F
from synthetic_video import write_video
from torch import nn

from tamdeploy.deploy.data import ClipSpec
from tamdeploy.deploy.video import FrameTransform

CLASSES = ("right", "left", "down", "up")
_STEP = {"right": (0, 1), "left": (0, -1), "down": (1, 0), "up": (-1, 0)}  # (dy, dx) per frame


@dataclass(frozen=True)
class MotionSpec:
    """Clip geometry: ``frames`` frames of ``video_size``² pixels; a ``square``-pixel square moves
    ``speed`` pixels a frame and stays ``margin`` pixels inside the frame (the centre crop of a
    ``video_size`` frame scaled to 256/224 of the model's input keeps ~3 px less on each side)."""

    frames: int = 4
    video_size: int = 36
    square: int = 8
    speed: int = 4
    margin: int = 5
    noise: float = 12.0  # std of the static background texture, in 8-bit levels

    @property
    def travel(self) -> int:
        return self.speed * (self.frames - 1)


def render_clip(label: int, rng: np.random.Generator, spec: MotionSpec = MotionSpec()) -> np.ndarray:
    """One clip of class ``label``: uint8 ``[frames, video_size, video_size, 3]``."""
    v, s = spec.video_size, spec.square
    lo, hi = spec.margin, v - spec.margin - s  # range of the square's top-left corner over the clip
    if hi - lo < spec.travel:
        raise ValueError(f"a {s}px square moving {spec.travel}px does not fit in {v}px with margin {spec.margin}")
    dy, dx = _STEP[CLASSES[label]]
    # start so that the whole path fits; the perpendicular coordinate is free
    y0 = rng.integers(lo, hi + 1) if dy == 0 else (rng.integers(lo, hi - spec.travel + 1) + (spec.travel if dy < 0 else 0))
    x0 = rng.integers(lo, hi + 1) if dx == 0 else (rng.integers(lo, hi - spec.travel + 1) + (spec.travel if dx < 0 else 0))
    background = rng.integers(20, 110, 3).astype(np.float32)
    texture = rng.normal(0.0, spec.noise, (v, v, 1)).astype(np.float32)
    colour = rng.integers(150, 256, 3).astype(np.float32)
    frames = np.empty((spec.frames, v, v, 3), dtype=np.float32)
    for t in range(spec.frames):
        frames[t] = background + texture
        y, x = y0 + dy * spec.speed * t, x0 + dx * spec.speed * t
        frames[t, y:y + s, x:x + s] = colour
    return np.clip(np.rint(frames), 0, 255).astype(np.uint8)


def balanced_labels(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` labels, each class (almost) equally often, in random order."""
    return rng.permutation(np.arange(n) % len(CLASSES))


def write_dataset(directory: str | Path, n: int, seed: int, spec: MotionSpec = MotionSpec()) -> Path:
    """``n`` mp4 clips named ``{i:05d}_{class}.mp4`` in ``directory`` (created)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i, label in enumerate(balanced_labels(n, rng)):
        write_video(directory / f"{i:05d}_{CLASSES[label]}.mp4", render_clip(int(label), rng, spec),
                    options={"crf": "12"})
    return directory


def labels_of(sources: list[str]) -> np.ndarray:
    """The labels of clips read from ``write_dataset`` files (``Batch.sources``)."""
    return np.array([CLASSES.index(Path(s).stem.split("_", 1)[1]) for s in sources])


def model_input(frames: np.ndarray, clip_spec: ClipSpec) -> np.ndarray:
    """uint8 ``[N, T, V, V, 3]`` rendered frames to the model's float32 input ``[N, T, 3, S, S]``,
    through the resize + crop that decoding applies (``FrameTransform``) and ``ClipSpec.normalise``."""
    transform = FrameTransform(clip_spec.input_size, clip_spec.scale_size if clip_spec.resize else None)
    n, t = frames.shape[:2]
    cropped = np.stack([transform(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24"))
                        for f in frames.reshape(n * t, *frames.shape[2:])])
    return clip_spec.normalise(cropped.reshape(n, t, *cropped.shape[1:]))


def sample_batch(n: int, rng: np.random.Generator, clip_spec: ClipSpec,
                 spec: MotionSpec = MotionSpec()) -> tuple[np.ndarray, np.ndarray]:
    labels = balanced_labels(n, rng)
    frames = np.stack([render_clip(int(label), rng, spec) for label in labels])
    return model_input(frames, clip_spec), labels


@dataclass
class TrainResult:
    steps: int
    seconds: float
    final_loss: float


def train(model: nn.Module, clip_spec: ClipSpec, *, spec: MotionSpec = MotionSpec(), steps: int = 60,
          batch_size: int = 24, lr: float = 3e-3, seed: int = 0, time_limit: float | None = None) -> TrainResult:
    """Train ``model`` (``[N, T, 3, S, S]`` -> logits over ``CLASSES``) with AdamW and a one-cycle
    schedule on freshly rendered clips; then re-estimate BatchNorm statistics (a few dozen steps
    leave the running averages far behind the weights) and return the model in eval mode."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.25)
    started = time.perf_counter()
    loss = torch.tensor(float("nan"))
    step = 0
    for step in range(1, steps + 1):  # noqa: B007 (read after the loop)
        x, y = sample_batch(batch_size, rng, clip_spec, spec)
        loss = F.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(y))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if time_limit is not None and time.perf_counter() - started > time_limit:
            break
    recalibrate_batchnorm(model, [sample_batch(batch_size, rng, clip_spec, spec)[0] for _ in range(4)])
    return TrainResult(steps=step, seconds=time.perf_counter() - started, final_loss=float(loss.detach()))


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, batches: list[np.ndarray]) -> None:
    """Replace BatchNorm running statistics by their plain average over ``batches``; eval mode after."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    model.train()
    for x in batches:
        model(torch.from_numpy(x))
    model.eval()


@torch.no_grad()
def predict(model: nn.Module, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Logits of an eval-mode model over ``x`` in chunks."""
    model.eval()
    return np.concatenate([model(torch.from_numpy(x[i:i + batch_size])).numpy()
                           for i in range(0, len(x), batch_size)])


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.argmax(logits, axis=1) == labels))
