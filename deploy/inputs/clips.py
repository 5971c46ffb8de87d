"""Real model inputs for verify, bench and INT8 calibration: clips from videos, frame folders,
images or ``.npy`` arrays, sampled and normalised the way TSN tests.

A video model's sample is ``[T, 3, S, S]`` float32: T frames chosen by TSN's test-time rule
(``video.segment_indices``: the centre frame of each of T equal segments), each resized so its
shorter side is ``round(S * 256 / 224)`` (256 for S = 224, TSN's ``scale_size``), centre-cropped to
S x S, scaled to [0, 1] and normalised with the model's mean/std. An image model's sample is one
such frame, ``[3, S, S]`` (a video gives its middle frame). ``ClipSpec(resize=False)`` skips the
resize, so known pixel values reach the crop unchanged.

PATH may be a video, an image (image models), a ``.npy`` file, a frame folder (a directory of
images, sorted by name, = one clip; video models), or a directory holding any of these, walked in
sorted order. A file that cannot be decoded is named in a warning, skipped, and listed in the
``DataSummary``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tamdeploy.console import progress_bar, warn
from tamdeploy.deploy.inputs.video import (
    IMAGE_EXTENSIONS,
    VIDEO_EXTENSIONS,
    FrameTransform,
    UndecodableError,
    Views,
    natural_key,
    read_frame_folder_views,
    read_video_views,
)
from tamdeploy.errors import DataError
from tamdeploy.models.config import sample_shape

if TYPE_CHECKING:
    from tamdeploy.exporters.metadata import ModelMetadata
    from tamdeploy.models.config import ModelConfig


@dataclass(frozen=True)
class ClipSpec:
    """What one model input looks like: T (None for an image model), S, and the normalisation."""

    num_segments: int | None
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize: bool = True

    def __post_init__(self) -> None:
        if self.num_segments is not None and self.num_segments < 1:
            raise DataError(f"num_segments must be at least 1 (or None for an image model), got {self.num_segments}")
        if self.input_size < 1:
            raise DataError(f"input_size must be at least 1, got {self.input_size}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise DataError(f"mean and std need 3 values each, std positive; got mean={self.mean} std={self.std}")

    @classmethod
    def from_config(cls, config: ModelConfig, resize: bool = True) -> ClipSpec:
        return cls(config.num_segments, config.input_size, tuple(config.mean), tuple(config.std), resize)

    @classmethod
    def from_metadata(cls, metadata: ModelMetadata, resize: bool = True) -> ClipSpec:
        """From the metadata an exported ONNX file carries (``exporters.metadata.read_metadata``)."""
        return cls.from_config(metadata.config, resize)

    @property
    def is_video(self) -> bool:
        return self.num_segments is not None

    def describe(self) -> str:
        """``8x224x224, mean 0.485/0.456/0.406, std 0.229/0.224/0.225``: what an error message compares."""
        frames = f"{self.num_segments}x" if self.is_video else "image "
        return (f"{frames}{self.input_size}x{self.input_size}, mean {'/'.join(f'{v:g}' for v in self.mean)}, "
                f"std {'/'.join(f'{v:g}' for v in self.std)}")

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return sample_shape(self.num_segments, self.input_size)

    @property
    def scale_size(self) -> int:
        """Shorter side before the centre crop: TSN's 256 for 224, the same ratio for other sizes."""
        return round(self.input_size * 256 / 224)

    def describe_shape(self) -> str:
        """The accepted array shapes, for messages: "[8, 3, 224, 224] or [N, 8, 3, 224, 224]"."""
        dims = ", ".join(map(str, self.sample_shape))
        return f"[{dims}] or [N, {dims}]"

    def normalise(self, frames: np.ndarray) -> np.ndarray:
        """uint8 RGB ``[..., H, W, 3]`` to float32 ``[..., 3, H, W]``: x / 255, minus mean, over std."""
        x = np.moveaxis(frames, -1, -3).astype(np.float32, order="C") / np.float32(255)
        mean = np.asarray(self.mean, dtype=np.float32)[:, None, None]
        std = np.asarray(self.std, dtype=np.float32)[:, None, None]
        return (x - mean) / std


@dataclass(frozen=True)
class Clip:
    """One model input (no batch axis): ``array`` is float32 ``spec.sample_shape``."""

    source: str  # a file or folder; "file.npy[i]" for the i-th sample of a batched array
    array: np.ndarray


@dataclass(frozen=True)
class SkippedFile:
    source: str
    reason: str


@dataclass
class DataSummary:
    """What a read used and what it skipped (files that could not be decoded), in walk order."""

    used: list[str] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"used": list(self.used), "skipped": [{"source": s.source, "reason": s.reason} for s in self.skipped]}


@dataclass(frozen=True)
class Batch:
    """Samples stacked on a batch axis: ``array`` is float32 ``[N, *spec.sample_shape]``."""

    array: np.ndarray
    sources: list[str]  # one per sample
    summary: DataSummary


@dataclass(frozen=True)
class Source:
    """One thing under a PATH that gives clips."""

    path: Path
    kind: str  # "video" | "image" | "frames" | "npy"


def _entries(directory: Path) -> list[Path]:
    try:
        children = list(directory.iterdir())
    except OSError as e:
        raise DataError(f"cannot list {directory}: {e.strerror or e}") from e
    return sorted((p for p in children if not p.name.startswith(".")), key=natural_key)


def _walk(directory: Path, spec: ClipSpec) -> Iterator[Source]:
    """For a video model, a directory of images and nothing else is one frame folder; images beside
    videos, arrays or subdirectories are not frames of one clip, so they are left out (with a warning)."""
    entries = _entries(directory)
    images = [e for e in entries if e.suffix.lower() in IMAGE_EXTENSIONS and e.is_file()]
    if spec.is_video and images:
        if not any(e.is_dir() or e.suffix.lower() in (*VIDEO_EXTENSIONS, ".npy") for e in entries):
            yield Source(directory, "frames")
            return
        warn(f"{directory}: left out {len(images)} image(s) that sit beside videos, arrays or folders "
             "(a frame folder holds only the frames of one clip)")
    for entry in entries:
        suffix = entry.suffix.lower()
        if entry.is_dir():
            yield from _walk(entry, spec)
        elif suffix in VIDEO_EXTENSIONS:
            yield Source(entry, "video")
        elif suffix == ".npy":
            yield Source(entry, "npy")
        elif suffix in IMAGE_EXTENSIONS and not spec.is_video:
            yield Source(entry, "image")


def _kinds_wanted(spec: ClipSpec) -> str:
    things = "frame folders" if spec.is_video else "images (" + ", ".join(IMAGE_EXTENSIONS) + ")"
    return f"videos ({', '.join(VIDEO_EXTENSIONS)}), {things} or .npy arrays"


def find_sources(path: str | Path, spec: ClipSpec) -> list[Source]:
    """Everything under PATH that can give clips, in a fixed (sorted by name) order."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path} does not exist")
    if path.is_dir():
        sources = list(_walk(path, spec))
        if not sources:
            raise DataError(f"{path} holds no {_kinds_wanted(spec)}")
        return sources
    suffix = path.suffix.lower()
    if suffix in VIDEO_EXTENSIONS:
        return [Source(path, "video")]
    if suffix == ".npy":
        return [Source(path, "npy")]
    if suffix in IMAGE_EXTENSIONS:
        if spec.is_video:
            raise DataError(f"{path} is a single image, but the model takes clips of {spec.num_segments} frames: "
                            "give a video or a folder of frames")
        return [Source(path, "image")]
    raise DataError(f"{path}: unsupported file type '{path.suffix}'; expected {_kinds_wanted(spec)}")


def _npy_clips(path: Path, spec: ClipSpec) -> Iterator[Clip]:
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise UndecodableError(f"not a readable .npy file ({e})") from e
    one = spec.sample_shape
    if array.shape == one:
        samples, batched = array[None], False
    elif array.ndim == len(one) + 1 and array.shape[1:] == one:
        samples, batched = array, True
    else:
        raise DataError(f"{path} holds an array of shape {list(array.shape)}; the model takes "
                        f"{spec.describe_shape()} (float, already normalised with the model's mean/std)")
    if not np.issubdtype(array.dtype, np.floating):
        raise DataError(f"{path} holds {array.dtype} values; give float arrays already normalised with the "
                        f"model's mean/std (mean={list(spec.mean)}, std={list(spec.std)})")
    if len(samples) == 0:
        raise DataError(f"{path} holds an empty batch (shape {list(array.shape)})")
    for i, sample in enumerate(samples):
        clip = np.array(sample, dtype=np.float32)
        if not np.isfinite(clip).all():
            raise DataError(f"{path}{f'[{i}]' if batched else ''} holds NaN or infinite values")
        yield Clip(f"{path}[{i}]" if batched else str(path), clip)


def frame_images(directory: Path) -> list[Path]:
    """A frame folder's images in frame order. mmaction2's rawframes folders hold RGB frames
    ``img_00001.jpg`` beside optical flow ``x_00001.jpg`` / ``y_00001.jpg``: where ``img_`` frames
    exist, only they are the clip."""
    images = [e for e in _entries(directory) if e.suffix.lower() in IMAGE_EXTENSIONS and e.is_file()]
    rgb = [e for e in images if e.name.startswith("img_")]
    return rgb or images


def read_views(path: str | Path, spec: ClipSpec, views: Views | None = None) -> np.ndarray:
    """Every test view of one video, frame folder or image (for an image model) as model input:
    float32 ``[views.count, *spec.sample_shape]``, ordered as ``Views`` says. Raises
    ``UndecodableError`` for a file that cannot be used (missing, damaged, no frames)."""
    return spec.normalise(read_view_frames(path, spec, views))


def read_view_frames(path: str | Path, spec: ClipSpec, views: Views | None = None) -> np.ndarray:
    """``read_views`` before normalisation: uint8 RGB ``[views, T, S, S, 3]`` (``[views, S, S, 3]`` for an
    image model), a quarter of the bytes for a process or node boundary to carry."""
    path, views = Path(path), views or Views()
    transform = FrameTransform(spec.input_size, spec.scale_size if spec.resize else None, views.crops)
    segments = spec.num_segments or 1
    if path.is_dir():
        images = frame_images(path)
        if not images:
            raise UndecodableError(f"the frame folder holds no images ({', '.join(IMAGE_EXTENSIONS)})")
        frames = read_frame_folder_views(images, segments, transform, views.clips)
    elif not path.exists():
        raise UndecodableError("it does not exist")
    elif path.suffix.lower() in IMAGE_EXTENSIONS:
        frames = np.repeat(read_frame_folder_views([path], 1, transform, 1), views.clips, axis=0)
        if spec.is_video:
            frames = np.repeat(frames, segments, axis=1)  # a still image as a clip of T equal frames
    else:
        frames = read_video_views(path, segments, transform, views.clips)
    if not spec.is_video:
        frames = frames[:, 0]
    return frames


def _clips_of(source: Source, spec: ClipSpec) -> Iterator[Clip]:
    if source.kind == "npy":
        yield from _npy_clips(source.path, spec)
    else:
        yield Clip(str(source.path), read_views(source.path, spec)[0])  # the one test view: TSN's


def iter_clips(path: str | Path, spec: ClipSpec, limit: int | None = None, progress: bool = True,
               summary: DataSummary | None = None) -> Iterator[Clip]:
    """Clips from PATH in walk order, at most ``limit``. The path is checked now (missing, empty,
    unsupported: DataError); files are decoded lazily, one at a time. Undecodable files are warned
    about, skipped and recorded in ``summary`` (pass one to read it afterwards); if nothing at all
    could be used, the iteration ends with a DataError."""
    if limit is not None and limit < 1:
        raise DataError(f"the number of samples must be at least 1, got {limit}")
    sources = find_sources(path, spec)
    return _iterate(Path(path), sources, spec, limit, progress, summary if summary is not None else DataSummary())


def _iterate(path: Path, sources: list[Source], spec: ClipSpec, limit: int | None, progress: bool,
             summary: DataSummary) -> Iterator[Clip]:
    count = 0
    with progress_bar(progress) as bar:
        task = bar.add_task(f"reading {path.name or path}", total=len(sources))
        for source in sources:
            clips = _clips_of(source, spec)
            try:
                first = next(clips)  # decodes the file (an array: loads and checks it)
            except UndecodableError as e:
                summary.skipped.append(SkippedFile(str(source.path), str(e)))
                if path.is_dir():  # a single file that fails is the DataError below
                    warn(f"skipped {source.path}: {e}")
            else:
                summary.used.append(str(source.path))
                for clip in chain([first], clips):
                    yield clip
                    count += 1
                    if limit is not None and count >= limit:
                        return
            bar.advance(task)
    if count == 0:  # every source was skipped: a source that is used gives at least one clip
        first = summary.skipped[0]
        if path.is_file():
            raise DataError(f"cannot use {path}: {first.reason}")
        raise DataError(f"no usable input in {path}: {len(summary.skipped)} file(s) could not be decoded "
                        f"(first: {first.source}: {first.reason})")


def load_batch(path: str | Path, spec: ClipSpec, samples: int | None = None, progress: bool = True,
               warn_short: bool = True) -> Batch:
    """The first ``samples`` clips of PATH (all of them for None) stacked into one array. Fewer
    clips than asked for is a warning (``warn_short``), not an error: the batch holds what there is."""
    summary = DataSummary()
    clips = list(iter_clips(path, spec, limit=samples, progress=progress, summary=summary))
    if warn_short and samples is not None and len(clips) < samples:
        warn(f"{path} gave {len(clips)} sample(s), fewer than the {samples} asked for; using {len(clips)}")
    return Batch(np.stack([c.array for c in clips]), [c.source for c in clips], summary)


def random_clips(spec: ClipSpec, n: int, seed: int = 0) -> Batch:
    """``n`` samples of uniformly random 8-bit pixels, normalised like decoded frames (so values sit
    in the range a real input has), for when no data is given. Same seed, same batch."""
    if n < 1:
        raise DataError(f"the number of samples must be at least 1, got {n}")
    s = spec.input_size
    frames = (n, spec.num_segments, s, s, 3) if spec.is_video else (n, s, s, 3)
    pixels = np.random.default_rng(seed).integers(0, 256, frames, dtype=np.uint8)
    sources = [f"random(seed={seed})[{i}]" for i in range(n)]
    return Batch(spec.normalise(pixels), sources, DataSummary(used=list(sources)))
