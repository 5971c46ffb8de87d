"""Frames out of video files and images with PyAV: TSN's test-time frame choice, resize, centre crop.

Everything here returns uint8 RGB frames ``[K, S, S, 3]``; turning them into normalised model input
is ``tamdeploy.deploy.inputs.clips``'s job. PyAV is imported on first use, so ``import tamdeploy`` and
``.npy`` inputs work without it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tamdeploy.errors import BackendUnavailableError, DataError

if TYPE_CHECKING:
    import av as av_module

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


class UndecodableError(DataError):
    """One file that cannot be turned into frames; a directory walk skips it and goes on."""


def natural_key(path: Path) -> tuple[list, str]:
    """Sort key by name with digit runs compared as numbers: ``img_2`` before ``img_10`` (the same
    order as plain sorting for the usual zero-padded names); the name itself breaks ties."""
    parts = re.split(r"(\d+)", path.name)  # text, digits, text, ...: digit runs at odd positions
    return [int(part) if i % 2 else part for i, part in enumerate(parts)], path.name


def segment_indices(num_frames: int, num_segments: int) -> list[int]:
    """TSN's test-time sampling: split the clip into ``num_segments`` equal segments and take the
    frame at the centre of each.

    TSN (``TSNDataSet._get_test_indices``, also TSM/TANet) computes, with new_length = 1,
    ``tick = num_frames / num_segments; [int(tick / 2 + tick * i) for i in range(num_segments)]``
    (plus 1 for its 1-based image names). Here the same value is computed in integers,
    ``(num_frames * (2i + 1)) // (2 * num_segments)``, so float rounding cannot move a frame.
    A clip with fewer frames than segments repeats frames (3 frames, 8 segments: 0 0 0 1 1 2 2 2).
    An image model takes one segment: the middle frame ``num_frames // 2``.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be at least 1, got {num_frames}")
    return [(num_frames * (2 * i + 1)) // (2 * num_segments) for i in range(num_segments)]


def resized_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(width, height) with the shorter side scaled to ``short_side``, aspect ratio kept; the longer
    side is truncated like torchvision's ``Resize(int)``, which TSN's ``GroupScale`` uses."""
    if width <= height:
        return short_side, int(short_side * height / width)
    return int(short_side * width / height), short_side


def crop_origin(width: int, height: int, size: int) -> tuple[int, int]:
    """(left, top) of the centred ``size`` x ``size`` window, rounded like torchvision's CenterCrop."""
    return int(round((width - size) / 2.0)), int(round((height - size) / 2.0))


def _av() -> av_module:
    try:
        import av
    except ImportError as e:
        raise BackendUnavailableError(
            "decoding videos and images needs PyAV: pip install 'tamdeploy[video]' (or give .npy arrays)"
        ) from e
    return av


class FrameTransform:
    """One decoded frame to a uint8 RGB ``[S, S, 3]`` array: optional bilinear resize of the shorter
    side to ``scale_size`` (swscale, in the same call as the YUV -> RGB conversion), then centre crop."""

    def __init__(self, size: int, scale_size: int | None):
        self.size = size
        self.scale_size = scale_size

    def __call__(self, frame: av_module.VideoFrame) -> np.ndarray:
        if self.scale_size is None:
            rgb = frame.to_ndarray(format="rgb24")
        else:
            width, height = resized_size(frame.width, frame.height, self.scale_size)
            rgb = frame.to_ndarray(format="rgb24", width=width, height=height, interpolation="BILINEAR")
        height, width = rgb.shape[:2]
        if height < self.size or width < self.size:
            raise UndecodableError(f"frames are {width}x{height}, smaller than the model's input "
                                   f"{self.size}x{self.size}, and resizing is off")
        left, top = crop_origin(width, height, self.size)
        return np.ascontiguousarray(rgb[top:top + self.size, left:left + self.size])


def _why(error: Exception) -> str:
    """FFmpeg's own words ("Invalid data found when processing input"), without errno and file name."""
    return getattr(error, "strerror", None) or str(error)


def _open(path: Path) -> av_module.container.InputContainer:
    av = _av()
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as e:
        raise UndecodableError(f"cannot open it: {_why(e)}") from e
    if not container.streams.video:
        container.close()
        raise UndecodableError("it has no video stream")
    return container


def count_frames(path: Path) -> int:
    """Frames in the first video stream, by demuxing (no decoding): containers such as Matroska/WebM
    do not record a count, and a recorded one can be wrong."""
    av = _av()
    with _open(path) as container:
        try:
            return sum(1 for packet in container.demux(container.streams.video[0]) if packet.size)
        except av.FFmpegError as e:
            raise UndecodableError(f"cannot read it: {_why(e)}") from e


def _decode_at(path: Path, indices: Sequence[int], transform: FrameTransform) -> tuple[dict[int, np.ndarray], int]:
    """Decode once from the start up to the last wanted index, converting only the wanted frames.
    Returns the converted frames by index and how many frames were decoded."""
    av = _av()
    wanted = set(indices)
    last = max(indices)
    kept: dict[int, np.ndarray] = {}
    decoded = 0
    with _open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            for index, frame in enumerate(container.decode(stream)):
                decoded = index + 1
                if index in wanted:
                    kept[index] = transform(frame)
                if index >= last:
                    break
        except av.FFmpegError as e:
            raise UndecodableError(f"decoding failed after {decoded} frame(s): {_why(e)}") from e
    return kept, decoded


def read_video(path: Path, num_segments: int, transform: FrameTransform) -> np.ndarray:
    """``num_segments`` frames of a video chosen by ``segment_indices``: uint8 ``[T, S, S, 3]``.

    The frame count comes from demuxing; if fewer frames decode than packets were counted (a damaged
    tail, invisible frames), the choice is made again from the frames that did decode.
    """
    total = count_frames(path)
    if total == 0:
        raise UndecodableError("it has no video frames")
    indices = segment_indices(total, num_segments)
    kept, decoded = _decode_at(path, indices, transform)
    if len(kept) < len(set(indices)):
        if decoded == 0:
            raise UndecodableError("no frame could be decoded")
        indices = segment_indices(decoded, num_segments)
        kept, _ = _decode_at(path, indices, transform)
    return np.stack([kept[i] for i in indices])


def read_image(path: Path, transform: FrameTransform) -> np.ndarray:
    """One image file (anything FFmpeg reads: JPEG, PNG, BMP) as uint8 ``[S, S, 3]``."""
    av = _av()
    with _open(path) as container:
        try:
            frame = next(container.decode(container.streams.video[0]), None)
        except av.FFmpegError as e:
            raise UndecodableError(f"cannot decode it: {_why(e)}") from e
        if frame is None:
            raise UndecodableError("it holds no image")
        return transform(frame)


def read_frame_folder(images: Sequence[Path], num_segments: int, transform: FrameTransform) -> np.ndarray:
    """A clip stored as one image per frame (already in frame order): only the chosen frames are
    decoded. uint8 ``[T, S, S, 3]``; an image that fails names itself in the error."""
    indices = segment_indices(len(images), num_segments)
    decoded: dict[int, np.ndarray] = {}
    for i in indices:
        if i not in decoded:
            try:
                decoded[i] = read_image(images[i], transform)
            except UndecodableError as e:
                raise UndecodableError(f"frame {images[i].name}: {e}") from e
    return np.stack([decoded[i] for i in indices])
