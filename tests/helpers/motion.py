"""A synthetic video dataset whose class only the order of frames tells, and a tiny trainer, for
accuracy tests that mean something on a CPU in seconds.

Each clip is ``len(CLASSES)`` frames of one static textured background; in exactly one frame a
square of a random bright colour flashes at a random place, and the class is *which* frame. Every
clip holds the same bag of frames (one flash, the rest plain), so a single frame or a TSN averaging
its frames is at chance (25 %); played backwards, class k becomes class T-1-k.

Tried first and dropped (training budget ~30 s on a 2-core CPU, width-0.25 R50s from scratch at
32x32, T=4): the direction of a moving square (left/right/up/down) and a square that grows, shrinks,
brightens or darkens. ACTION-Net, whose shift starts as a fixed temporal offset per channel group,
learned both in 60 steps; TANet stayed near chance for 120-200 steps. Its TAM starts as a near-uniform
temporal blur with gates near 0.5 (the time-reversed clip changed its eval logits by 3e-5, ACTION-Net's
by 6e-2), so the order of small local changes reaches it only through multiplicative paths that take
long to start. A flash changes the pooled statistics TAM's kernel and gate are computed from, and
where it sits in the clip shows through TAM's zero padding at the clip's ends: TANet reaches ~97 %
in 120 steps.

Clips are rendered as uint8 RGB frames, written as real H.264 mp4 files with PyAV
(``synthetic_video.write_video``) and read back through ``tamdeploy.deploy.inputs.clips`` for evaluation
and calibration: label = class name in the file name. Training uses frames rendered on the fly and
passed through the same resize + centre crop + normalisation as decoding (``FrameTransform``,
``ClipSpec.normalise``), without the codec round trip: writing and decoding ~10 ms a clip would cost
more than the training itself.
"""

from __future__ import annotations

import time
import types
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from helpers.video import write_video
from tamdeploy.deploy.inputs.clips import ClipSpec
from tamdeploy.deploy.inputs.video import FrameTransform
from tamdeploy.exporters.rewrites import is_tam

CLASSES = ("first", "second", "third", "fourth")  # the frame that holds the flash


@dataclass(frozen=True)
class MotionSpec:
    """Clip geometry: ``len(CLASSES)`` frames of ``video_size``² pixels on a static textured background;
    in one of them (the class) a ``square``-pixel square of a random bright colour flashes, anywhere at
    least ``margin`` pixels inside the frame (the centre crop of a frame scaled to 256/224 of the model's
    input drops ~3 px a side)."""

    video_size: int = 36
    square: int = 14
    margin: int = 5
    noise: float = 12.0  # std of the background texture, in 8-bit levels

    @property
    def frames(self) -> int:
        return len(CLASSES)


def render_clip(label: int, rng: np.random.Generator, spec: MotionSpec = MotionSpec()) -> np.ndarray:
    """One clip of class ``label``: uint8 ``[frames, video_size, video_size, 3]``."""
    v, s = spec.video_size, spec.square
    background = rng.integers(20, 90, 3).astype(np.float32) + rng.normal(0.0, spec.noise, (v, v, 1)).astype(np.float32)
    frames = np.repeat(background[None], spec.frames, axis=0)
    top, left = rng.integers(spec.margin, v - spec.margin - s + 1, 2)
    frames[label, top:top + s, left:left + s] = rng.uniform(150, 255, 3)
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
          batch_size: int = 24, lr: float = 3e-3, seed: int = 0) -> TrainResult:
    """Train ``model`` (``[N, T, 3, S, S]`` -> logits over ``CLASSES``) with AdamW and a one-cycle
    schedule on freshly rendered clips; then re-estimate BatchNorm statistics (a few dozen steps
    leave the running averages far behind the weights) and return the model in eval mode."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    dropouts = [(m, m.p) for m in model.modules() if isinstance(m, nn.Dropout)]
    for m, _ in dropouts:  # a few hundred clips of noise-free classes need no regularisation
        m.p = 0.0
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.25)
    started = time.perf_counter()
    loss = torch.tensor(float("nan"))
    with fast_tam(model):
        for _ in range(steps):
            x, y = sample_batch(batch_size, rng, clip_spec, spec)
            loss = F.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(y))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    for m, p in dropouts:
        m.p = p
    recalibrate_batchnorm(model, [sample_batch(batch_size, rng, clip_spec, spec)[0] for _ in range(4)])
    return TrainResult(steps=steps, seconds=time.perf_counter() - started, final_loss=float(loss.detach()))


def _tam_training_forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """TAM's forward as export writes it (``exporters.rewrites.tam_forward``: the same function),
    with K shifted slices in place of the grouped conv, whose backward on CPU made a TANet training
    step several times slower. Equal to ``TAM.forward`` (``test_training_forward_is_tam``)."""
    t, c, k = self.num_segments, x.shape[1], self.kernel_size
    p = (k - 1) // 2
    pooled = x.mean(dim=(2, 3)).view(-1, t, c).transpose(1, 2)  # [N, C, T]
    kernel = self.G(pooled.reshape(-1, t)).view(-1, c, k).transpose(1, 2).unsqueeze(-1)  # [N, K, C, 1]
    gated = x.view(-1, t, c, x.shape[2] * x.shape[3]) * self.L(pooled).transpose(1, 2).unsqueeze(-1)
    padded = F.pad(gated, (0, 0, 0, 0, p, p))  # zero frames before and after the clip
    y = sum(padded[:, j:j + t] * kernel[:, j:j + 1] for j in range(k))
    return y.reshape(x.shape)


@contextmanager
def fast_tam(model: nn.Module) -> Iterator[None]:
    """Train tamdeploy TAM modules through ``_tam_training_forward``; their own forward is back after."""
    tams = [m for m in model.modules() if is_tam(m)]
    for m in tams:
        m.forward = types.MethodType(_tam_training_forward, m)
    try:
        yield
    finally:
        for m in tams:
            del m.forward


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
