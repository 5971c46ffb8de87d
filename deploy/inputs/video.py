"""Frames out of video files and images with PyAV: TSN's test-time frame choice, resize, crops.

Everything here returns uint8 RGB frames ``[..., S, S, 3]``; turning them into normalised model input
is ``tamdeploy.deploy.inputs.clips``'s job. PyAV is imported on first use, so ``import tamdeploy`` and
``.npy`` inputs work without it; nothing here imports torch (decode workers and Triton's Python
models run this module).

A video is not decoded from its first frame to fetch T of them: the frame count and each frame's
timestamp come from the container (an MP4's sample table; a demux pass, which reads packets but
decodes nothing, where the container keeps no count), and decoding seeks to the keyframe before each
wanted frame unless that frame is a few frames ahead of the decoder anyway. The frames are the
same as a decode from the start (``tests/deploy/inputs/test_video_seek.py`` compares every index).
Rotation metadata (phone videos) is applied, as players and FFmpeg's autorotate do.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tamdeploy.errors import BackendUnavailableError, DataError

if TYPE_CHECKING:
    import av as av_module

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


# FFmpeg's decoder threads: 0 lets FFmpeg use every core (one process decoding alone); decode workers
# share the cores among themselves (``set_decoder_threads``, from ``tamdeploy.deploy.predict.decoding``).
_decoder_threads = 0


def set_decoder_threads(count: int) -> None:
    global _decoder_threads
    _decoder_threads = count


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


def clip_indices(num_frames: int, num_segments: int, clip: int, num_clips: int) -> list[int]:
    """Clip ``clip`` of ``num_clips`` evenly spaced test-time clips: each of the T segments is cut into
    ``num_clips`` equal parts and the clip takes the centre of its part, ``floor(n (2 K i + 2 k + 1) /
    (2 K T))`` for segment i, clip k of K. One clip is ``segment_indices`` (TSN's centre frames)."""
    if not 0 <= clip < num_clips:
        raise ValueError(f"clip must be in [0, {num_clips}), got {clip}")
    if num_frames < 1:
        raise ValueError(f"num_frames must be at least 1, got {num_frames}")
    parts = 2 * num_clips * num_segments
    return [(num_frames * (2 * num_clips * i + 2 * clip + 1)) // parts for i in range(num_segments)]


@dataclass(frozen=True)
class Views:
    """Multi-view testing as TSN / TANet report it: ``clips`` temporal clips (``clip_indices``) times
    ``crops`` spatial crops (1: the centre crop; 3: three crops along the longer side, ``FrameTransform``).
    A video's views are ordered clip by clip, crops within a clip; their scores are averaged."""

    clips: int = 1
    crops: int = 1

    def __post_init__(self) -> None:
        if self.clips < 1 or self.crops not in (1, 3):
            raise DataError(f"views {self}: clips must be at least 1 and crops 1 or 3 (e.g. 1x1, 10x3)")

    @classmethod
    def parse(cls, text: str) -> Views:
        """``"CLIPSxCROPS"``: ``"1x1"``, ``"3x3"``, ``"10x3"``."""
        match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
        if not match:
            raise DataError(f"views {text!r} do not parse: give CLIPSxCROPS, e.g. 1x1, 3x3 or 10x3")
        return cls(int(match.group(1)), int(match.group(2)))

    @property
    def count(self) -> int:
        return self.clips * self.crops

    def __str__(self) -> str:
        return f"{self.clips}x{self.crops}"


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


def crop_origins(width: int, height: int, size: int, crops: int) -> list[tuple[int, int]]:
    """(left, top) of each ``size`` x ``size`` crop: the centre one, or three along the longer side
    (left, centre, right; or top, centre, bottom), as mmaction2's ``ThreeCrop``."""
    centre = crop_origin(width, height, size)
    if crops == 1:
        return [centre]
    if width >= height:
        return [(0, centre[1]), centre, (width - size, centre[1])]
    return [(centre[0], 0), centre, (centre[0], height - size)]


class FrameTransform:
    """One decoded frame to uint8 RGB crops ``[crops, S, S, 3]``: rotation metadata applied, then a
    bilinear resize of the shorter side (swscale, in the same call as the YUV -> RGB conversion), then
    the crops. One crop: resize to ``scale_size`` (TSN's 256 for 224) and take the centre. Three crops:
    resize to S itself, so the three S x S crops cover the whole frame (mmaction2's 10x3 / 3x3 testing
    resizes to the crop size: ``Resize(-1, 256)``, ``ThreeCrop(256)``). ``scale_size=None``: no resize."""

    def __init__(self, size: int, scale_size: int | None, crops: int = 1):
        if crops not in (1, 3):
            raise DataError(f"crops must be 1 or 3, got {crops}")
        self.size = size
        self.scale_size = scale_size
        self.crops = crops

    def __call__(self, frame: av_module.VideoFrame) -> np.ndarray:
        """The first (for one crop: the only) crop, ``[S, S, 3]``."""
        return self.views(frame)[0]

    def views(self, frame: av_module.VideoFrame) -> np.ndarray:
        turns = round((getattr(frame, "rotation", 0) or 0) / 90) % 4  # counter-clockwise quarter turns
        stored_w, stored_h = frame.width, frame.height
        shown_w, shown_h = (stored_h, stored_w) if turns % 2 else (stored_w, stored_h)
        short_side = self.scale_size if self.crops == 1 else (self.size if self.scale_size is not None else None)
        if short_side is None:
            rgb = frame.to_ndarray(format="rgb24")
        else:
            width, height = resized_size(shown_w, shown_h, short_side)
            if turns % 2:  # resize in the stored orientation, then turn
                width, height = height, width
            rgb = frame.to_ndarray(format="rgb24", width=width, height=height, interpolation="BILINEAR")
        if turns:
            rgb = np.rot90(rgb, turns)
        height, width = rgb.shape[:2]
        if height < self.size or width < self.size:
            raise UndecodableError(f"frames are {width}x{height}, smaller than the model's input "
                                   f"{self.size}x{self.size}, and resizing is off")
        return np.stack([rgb[top:top + self.size, left:left + self.size]
                         for left, top in crop_origins(width, height, self.size, self.crops)])


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
    if _decoder_threads:
        container.streams.video[0].codec_context.thread_count = _decoder_threads
    return container


def _demuxed_timestamps(container: av_module.container.InputContainer, stream: av_module.video.VideoStream
                        ) -> list[int | None]:
    """Presentation timestamps of the stream's frames in display order, by reading packets (no decoding):
    for containers such as Matroska/WebM that record no frame count."""
    av = _av()
    try:
        stamps = [packet.pts for packet in container.demux(stream) if packet.size]
    except av.FFmpegError as e:
        raise UndecodableError(f"cannot read it: {_why(e)}") from e
    if any(t is None for t in stamps):
        return stamps
    return sorted(stamps)


@dataclass(frozen=True)
class _Timeline:
    """How many frames a video has and where frame i sits (its pts), plus how far a decoded frame's pts
    may be from frame i's and still be frame i (rounding of the container's timestamps)."""

    count: int
    pts_of: Callable[[int], int] | None  # None: the container gives no timestamps; decode from the start
    tolerance: Fraction  # in time-base units


def _constant_rate_timeline(_container: av_module.container.InputContainer,
                            stream: av_module.video.VideoStream) -> _Timeline | None:
    """MP4/MOV count their frames in the sample table; at a constant frame rate, frame i sits at
    ``start + i / rate``. Only a guess for variable-rate files (phones): a decoded frame that is not
    within one time-base unit of where it should be sends the read to ``_demuxed_timeline``."""
    rate, base = stream.average_rate, stream.time_base
    if stream.frames <= 0 or not rate or not base:
        return None
    step = Fraction(1) / (Fraction(rate) * Fraction(base))  # one frame, in time-base units
    start = stream.start_time or 0
    return _Timeline(stream.frames, lambda i: start + round(i * step), min(step / 2, Fraction(1)))


def _demuxed_timeline(container: av_module.container.InputContainer, stream: av_module.video.VideoStream
                      ) -> _Timeline:
    """Every frame's own pts, from a pass over the packets (read, not decoded): exact for any frame rate."""
    container.seek(0)  # after a seeking attempt that failed, the demuxer is mid-file
    stamps = _demuxed_timestamps(container, stream)
    container.seek(0)
    if not stamps or any(t is None for t in stamps):
        return _Timeline(len(stamps), None, Fraction(0))
    gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False) if b > a]
    return _Timeline(len(stamps), stamps.__getitem__, Fraction(min(gaps, default=1), 2))


class _NotReached(Exception):
    """Seeking did not find a wanted frame: the timestamps lie, or the file ends early."""


# Decoding on from the last frame beats seeking back to a keyframe when the next wanted frame is this
# close: a seek decodes from the keyframe before the target, up to a GOP (12-250 frames) of work.
_DECODE_ON_WITHIN = 48


def _decode_seeking(container: av_module.container.InputContainer, stream: av_module.video.VideoStream,
                    timeline: _Timeline, indices: Sequence[int], convert: Callable) -> dict[int, np.ndarray]:
    wanted = sorted(set(indices))
    kept: dict[int, np.ndarray] = {}
    frame_step = (timeline.pts_of(1) - timeline.pts_of(0)) if timeline.count > 1 else 1  # one frame, roughly
    frames = None
    position = None  # pts of the last decoded frame
    for index in wanted:
        try:
            target = timeline.pts_of(index)
        except IndexError:  # a container whose frame count and packets disagree
            raise _NotReached(f"no timestamp for frame {index}") from None
        near = position is not None and position <= target <= position + _DECODE_ON_WITHIN * frame_step
        if frames is None or not near:
            container.seek(target, stream=stream, backward=True, any_frame=False)
            frames = container.decode(stream)
        for decoded in frames:
            if decoded.pts is None:
                raise _NotReached("a frame without a timestamp")
            position = decoded.pts
            if decoded.pts >= target - timeline.tolerance:
                if decoded.pts > target + timeline.tolerance:
                    raise _NotReached(f"frame {index} is not where the timeline puts it (pts {decoded.pts}, "
                                      f"wanted {target})")
                kept[index] = convert(decoded)
                break
        else:
            raise _NotReached(f"the stream ended before frame {index}")
    return kept


def _decode_from_start(path: Path, indices: Sequence[int], convert: Callable) -> tuple[dict[int, np.ndarray], int]:
    """Decode once from the start up to the last wanted index, converting only the wanted frames.
    Returns the converted frames by index and how many frames were decoded. The fallback for files
    whose timestamps cannot be trusted, and how a damaged tail is measured."""
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
                    kept[index] = convert(frame)
                if index >= last:
                    break
        except av.FFmpegError as e:
            raise UndecodableError(f"decoding failed after {decoded} frame(s): {_why(e)}") from e
    return kept, decoded


def read_video_views(path: Path, num_segments: int, transform: FrameTransform, clips: int = 1) -> np.ndarray:
    """Every view of a video: uint8 ``[clips * transform.crops, T, S, S, 3]``, clip by clip (frames
    chosen by ``clip_indices``), crops within a clip. Each needed frame is decoded and converted once.

    If fewer frames decode than the container counted (a damaged tail, invisible frames), the choice
    is made again from the frames that did decode.
    """
    av = _av()
    with _open(path) as container:
        stream = container.streams.video[0]
        kept = None
        for make_timeline in (_constant_rate_timeline, _demuxed_timeline):
            try:
                timeline = make_timeline(container, stream)
            except av.FFmpegError as e:
                raise UndecodableError(f"cannot read it: {_why(e)}") from e
            if timeline is None:
                continue
            if timeline.count == 0:
                raise UndecodableError("it has no video frames")
            choice = [clip_indices(timeline.count, num_segments, k, clips) for k in range(clips)]
            needed = sorted({i for indices in choice for i in indices})
            if timeline.pts_of is None:
                break
            try:
                kept = _decode_seeking(container, stream, timeline, needed, transform.views)
                break
            except (_NotReached, av.FFmpegError):
                kept = None  # the next timeline, then decoding from the start, settle what the file holds
    if kept is None:
        kept, decoded = _decode_from_start(path, needed, transform.views)
        if len(kept) < len(needed):
            if decoded == 0:
                raise UndecodableError("no frame could be decoded")
            choice = [clip_indices(decoded, num_segments, k, clips) for k in range(clips)]
            kept, _ = _decode_from_start(path, sorted({i for c in choice for i in c}), transform.views)
    # kept[i]: [crops, S, S, 3] -> views [clip, crop] of [T, S, S, 3]
    return np.stack([np.stack([kept[i][crop] for i in indices])
                     for indices in choice for crop in range(transform.crops)])


def _read_image_views(path: Path, transform: FrameTransform) -> np.ndarray:
    """One image file (anything FFmpeg reads: JPEG, PNG, BMP) as uint8 crops ``[crops, S, S, 3]``."""
    av = _av()
    with _open(path) as container:
        try:
            frame = next(container.decode(container.streams.video[0]), None)
        except av.FFmpegError as e:
            raise UndecodableError(f"cannot decode it: {_why(e)}") from e
        if frame is None:
            raise UndecodableError("it holds no image")
        return transform.views(frame)


def read_frame_folder_views(images: Sequence[Path], num_segments: int, transform: FrameTransform,
                            clips: int = 1) -> np.ndarray:
    """A clip stored as one image per frame (already in frame order), as ``read_video_views`` reads a
    video: uint8 ``[clips * crops, T, S, S, 3]``; only the chosen frames are decoded, and an image that
    fails names itself in the error."""
    choice = [clip_indices(len(images), num_segments, k, clips) for k in range(clips)]
    decoded: dict[int, np.ndarray] = {}
    for i in sorted({i for indices in choice for i in indices}):
        try:
            decoded[i] = _read_image_views(images[i], transform)
        except UndecodableError as e:
            raise UndecodableError(f"frame {images[i].name}: {e}") from e
    return np.stack([np.stack([decoded[i][crop] for i in indices])
                     for indices in choice for crop in range(transform.crops)])

