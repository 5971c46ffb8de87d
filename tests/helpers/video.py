"""Videos, frame folders and images with known pixel values, written with PyAV, for tests.

Frames are uint8 RGB ``[N, H, W, 3]`` numpy arrays. Frame folders are PNG (lossless), so what is
written is exactly what is read back; videos are lossy, so tests give them flat colours and compare
with a tolerance. Encoders present in PyAV 18's wheels: libx264, mpeg4, libvpx(-vp9), ffv1, png, mjpeg.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from tamdeploy.deploy.inputs.synthetic import VIDEO_CODECS, write_video  # noqa: F401  (re-exported for tests)


def flat_colour(i: int) -> tuple[int, int, int]:
    """Frame i's colour in ``flat_frames``: red and green step by 12 per frame (readable back
    through a lossy codec), blue fixed."""
    return (12 * i) % 256, 255 - (12 * i) % 256, 100


def flat_frames(n: int, height: int, width: int) -> np.ndarray:
    """``n`` frames, each one flat colour ``flat_colour(i)``."""
    frames = np.empty((n, height, width, 3), dtype=np.uint8)
    for i in range(n):
        frames[i] = flat_colour(i)
    return frames


def coded_frames(n: int, height: int, width: int) -> np.ndarray:
    """Frames whose pixels say where they came from: R = frame index, G = row, B = column
    (so n, height, width <= 256). For lossless formats only."""
    if max(n, height, width) > 256:
        raise ValueError("coded_frames needs n, height and width of at most 256")
    frames = np.empty((n, height, width, 3), dtype=np.uint8)
    frames[..., 0] = np.arange(n, dtype=np.uint8)[:, None, None]
    frames[..., 1] = np.arange(height, dtype=np.uint8)[None, :, None]
    frames[..., 2] = np.arange(width, dtype=np.uint8)[None, None, :]
    return frames


def write_image(path: str | Path, frame: np.ndarray) -> Path:
    """One ``[H, W, 3]`` frame as an image: PNG (lossless) or JPEG, by suffix."""
    path = Path(path)
    height, width, _ = frame.shape
    rgb = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
    if path.suffix.lower() == ".png":
        codec = av.CodecContext.create("png", "w")
        codec.pix_fmt = "rgb24"
    else:
        codec = av.CodecContext.create("mjpeg", "w")
        codec.pix_fmt, codec.time_base = "yuvj444p", Fraction(1, 25)
        rgb = rgb.reformat(format="yuvj444p")
    codec.width, codec.height = width, height
    packets = codec.encode(rgb) + codec.encode(None)
    path.write_bytes(b"".join(bytes(p) for p in packets))
    return path


def write_frame_folder(directory: str | Path, frames: np.ndarray, pattern: str = "img_{:05d}.png",
                       start: int = 1) -> Path:
    """One image per frame, named ``pattern.format(start + i)`` (TSN's ``img_00001.jpg`` style)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        write_image(directory / pattern.format(start + i), frame)
    return directory


def write_garbage(path: str | Path, size: int = 4096, seed: int = 0) -> Path:
    """Random bytes under a media file's name: a file no decoder accepts."""
    path = Path(path)
    path.write_bytes(np.random.default_rng(seed).bytes(size))
    return path


def expected_clip(frames: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """What a decoder should produce from uint8 ``[..., H, W, 3]`` frames: ``[..., 3, H, W]`` float32,
    computed in float64 independently of ``ClipSpec.normalise``."""
    x = np.moveaxis(frames.astype(np.float64) / 255.0, -1, -3)
    mean64 = np.asarray(mean, dtype=np.float64)[:, None, None]
    std64 = np.asarray(std, dtype=np.float64)[:, None, None]
    return ((x - mean64) / std64).astype(np.float32)


def pixels(clip: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Undo normalisation: float ``[..., 3, H, W]`` back to 0..255 values ``[..., H, W, 3]`` (float)."""
    x = clip.astype(np.float64) * np.asarray(std)[:, None, None] + np.asarray(mean)[:, None, None]
    return np.moveaxis(x * 255.0, -3, -1)
