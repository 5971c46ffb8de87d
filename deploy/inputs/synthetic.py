"""Synthetic clips for the demo and the tests: a square moving across a textured background, written
as real video files with PyAV. The direction of motion is the label; any single frame is ambiguous,
so a model must use temporal order to classify it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tamdeploy.files import make_output_dir

# container suffix -> (encoder, pixel format); yuv420p needs even width and height
VIDEO_CODECS = {
    ".mp4": ("libx264", "yuv420p"),
    ".mkv": ("libx264", "yuv420p"),
    ".mov": ("libx264", "yuv420p"),
    ".avi": ("mpeg4", "yuv420p"),
    ".webm": ("libvpx-vp9", "yuv420p"),
}
DIRECTIONS = ("right", "left", "down", "up")
_STEP = {"right": (0, 1), "left": (0, -1), "down": (1, 0), "up": (-1, 0)}


def write_video(path: str | Path, frames: np.ndarray, fps: int = 25, codec: str | None = None,
                options: dict[str, str] | None = None, gop: int | None = None, rotation: int = 0) -> Path:
    """Encode uint8 RGB ``frames`` [N, H, W, 3]; the codec defaults by suffix (``VIDEO_CODECS``).
    ``gop``: frames between keyframes (the encoder's default otherwise); ``rotation``: display rotation
    metadata in degrees counter-clockwise, as a phone writes it (the frames are stored as given)."""
    import av

    path = Path(path)
    default_codec, pix_fmt = VIDEO_CODECS[path.suffix.lower()]
    _, height, width, _ = frames.shape
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec or default_codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        if gop is not None:
            stream.codec_context.gop_size = gop
        if rotation:
            stream.set_display_rotation(rotation)
        if options:
            stream.options = options
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        container.mux(stream.encode(None))
    return path


def moving_square(direction: str, frames: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 [frames, size, size, 3]: a bright square crossing a noisy background in ``direction``,
    starting at a random place with a random colour and speed."""
    if direction not in _STEP:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    side = max(4, size // 5)
    speed = rng.uniform(0.5, 1.0) * (size - side) / max(frames - 1, 1)
    dy, dx = _STEP[direction]
    span = (size - side) - speed * (frames - 1)
    start = np.array([rng.uniform(0, size - side), rng.uniform(0, size - side)])
    start[0] = rng.uniform(0, span) if dy == 1 else (size - side - rng.uniform(0, span) if dy == -1 else start[0])
    start[1] = rng.uniform(0, span) if dx == 1 else (size - side - rng.uniform(0, span) if dx == -1 else start[1])
    background = rng.integers(0, 80, size=(size, size, 3), dtype=np.uint8)
    colour = rng.integers(150, 256, size=3, dtype=np.uint8)
    clip = np.repeat(background[None], frames, axis=0)
    for t in range(frames):
        y, x = (start + speed * t * np.array([dy, dx])).round().astype(int)
        clip[t, y : y + side, x : x + side] = colour
    return clip


def write_motion_clips(directory: str | Path, count: int, frames: int = 16, size: int = 64, seed: int = 0,
                       suffix: str = ".mp4") -> list[tuple[Path, int]]:
    """``count`` clips cycling through ``DIRECTIONS`` as ``<index>_<direction><suffix>``;
    returns [(path, label index)]."""
    directory = make_output_dir(directory)
    rng = np.random.default_rng(seed)
    written = []
    for i in range(count):
        label = i % len(DIRECTIONS)
        path = directory / f"{i:04d}_{DIRECTIONS[label]}{suffix}"
        write_video(path, moving_square(DIRECTIONS[label], frames, size, rng))
        written.append((path, label))
    return written
