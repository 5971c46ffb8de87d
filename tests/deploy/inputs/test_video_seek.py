"""Seeking to sampled frames gives the frames a decode from the start gives; views and rotation."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest
from helpers.video import coded_frames, flat_colour, flat_frames, write_frame_folder, write_video

from tamdeploy.deploy.inputs import video
from tamdeploy.deploy.inputs.video import (
    FrameTransform,
    Views,
    clip_indices,
    read_frame_folder_views,
    read_video_views,
    segment_indices,
)
from tamdeploy.errors import DataError


def decoded_from_start(path, transform) -> list[np.ndarray]:
    """Every frame by plain sequential decoding with PyAV (no tamdeploy code but the transform)."""
    with av.open(str(path)) as container:
        return [transform.views(frame) for frame in container.decode(container.streams.video[0])]


def textured_frames(n: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """Noise that changes every frame, so that a frame taken from the wrong place cannot pass."""
    return np.random.default_rng(seed).integers(0, 256, (n, height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize("suffix,gop", [(".mp4", 12), (".mp4", None), (".mkv", 10), (".webm", 8), (".avi", 6),
                                        (".mov", 12)])
def test_seeking_gives_the_frames_of_a_decode_from_the_start(tmp_path, monkeypatch, suffix, gop):
    path = write_video(tmp_path / f"clip{suffix}", textured_frames(300, 32, 48), gop=gop)
    transform = FrameTransform(32, 37)
    every = decoded_from_start(path, transform)
    assert len(every) == 300

    def no_fallback(*_args, **_kwargs):
        raise AssertionError("seeking fell back to decoding from the start")

    monkeypatch.setattr(video, "_decode_from_start", no_fallback)
    for segments, clips in [(8, 1), (4, 3), (1, 5), (16, 2)]:
        views = read_video_views(path, segments, transform, clips=clips)
        for k in range(clips):
            expected = np.stack([every[i][0] for i in clip_indices(300, segments, k, clips)])
            np.testing.assert_array_equal(views[k], expected)


def write_timed(path, stamps_ms: list[int]) -> None:
    """An H.264 file whose frames sit at the given times (ms): a variable frame rate, as phones write."""
    frames = textured_frames(len(stamps_ms), 32, 48, seed=3)
    base = Fraction(1, 1000)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 48, 32, "yuv420p"
        stream.time_base = stream.codec_context.time_base = base
        stream.codec_context.gop_size = 12
        for frame, pts in zip(frames, stamps_ms, strict=True):
            video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
            video_frame.pts, video_frame.time_base = pts, base
            container.mux(stream.encode(video_frame))
        container.mux(stream.encode(None))


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
@pytest.mark.parametrize("kind", ["30 then 10 fps", "jitter", "start offset"])
def test_variable_frame_rate_gives_the_frames_of_a_decode_from_the_start(tmp_path, suffix, kind):
    """A constant-rate guess would pick neighbours here (3 of 7 clips wrong in review): the decoded
    timestamps disagree with it, and the read falls back to the frames' own timestamps."""
    if kind == "30 then 10 fps":
        stamps = [i * 1000 // 30 for i in range(60)] + [2000 + 100 * i for i in range(60)]
    elif kind == "jitter":
        gaps = np.random.default_rng(1).choice([33, 34, 33, 34, 50], size=120)
        stamps = [0, *np.cumsum(gaps)[:-1].astype(int).tolist()]
    else:
        stamps = [5000 + i * 1000 // 30 for i in range(120)]
    path = tmp_path / f"timed{suffix}"
    write_timed(path, stamps)
    transform = FrameTransform(32, None)
    every = decoded_from_start(path, transform)
    for segments, clips in [(8, 1), (4, 3), (16, 2)]:
        views = read_video_views(path, segments, transform, clips=clips)
        for k in range(clips):
            expected = np.stack([every[i][0] for i in clip_indices(len(every), segments, k, clips)])
            np.testing.assert_array_equal(views[k], expected)


def test_seeking_decodes_a_fraction_of_a_long_video(tmp_path, monkeypatch):
    """8 frames of a 600-frame video with keyframes every 25 frames: far fewer than 600 decodes."""
    path = write_video(tmp_path / "long.mp4", flat_frames(600, 16, 16), gop=25)
    decoded = 0
    real_decode = av.container.InputContainer.decode

    def counting_decode(self, *args, **kwargs):
        nonlocal decoded
        for frame in real_decode(self, *args, **kwargs):
            decoded += 1
            yield frame

    monkeypatch.setattr(av.container.InputContainer, "decode", counting_decode)
    clip = read_video_views(path, 8, FrameTransform(16, None))[0]
    np.testing.assert_allclose(clip[:, 8, 8], [flat_colour(i) for i in segment_indices(600, 8)], atol=6)
    assert 8 <= decoded <= 8 * 25, decoded  # counted (the spy saw the decoding), and far below 600


def test_clip_indices_spread_clips_evenly_inside_segments():
    assert clip_indices(20, 8, 0, 1) == segment_indices(20, 8)
    # 40 frames, 2 segments of 20, 4 clips: parts of 5 frames, centres at 2.5, 7.5, 12.5, 17.5 (+20)
    assert [clip_indices(40, 2, k, 4) for k in range(4)] == [[2, 22], [7, 27], [12, 32], [17, 37]]
    assert clip_indices(3, 4, 1, 2) == [0, 1, 2, 2]  # short videos repeat frames: floor(3 (4i + 3) / 16)


def test_views_parse_and_refuse_what_they_cannot_do():
    assert Views.parse("10x3") == Views(10, 3) and Views.parse(" 1X1 ").count == 1 and str(Views(3, 3)) == "3x3"
    for bad in ["3", "3x", "x3", "3x3x3", "0x1", "2x2", "ax1"]:
        with pytest.raises(DataError, match="CLIPSxCROPS|crops 1 or 3"):
            Views.parse(bad)


def test_three_crops_cover_the_long_side_after_resizing_to_the_crop_size(tmp_path):
    """A 60x40 (WxH) frame folder: 3 crops resize the short side to S=20 (30x20) and crop at x = 0, 5, 10;
    one crop resizes it to scale_size and takes the centre."""
    frames = coded_frames(4, 40, 60)  # G = row, B = column (lossless PNG)
    images = sorted(write_frame_folder(tmp_path / "f", frames).iterdir())
    views = read_frame_folder_views(images, 2, FrameTransform(20, 23, crops=3), clips=2)
    assert views.shape == (6, 2, 20, 20, 3)
    # clip k, crop c at views[3k + c]; frames of clip 0: [0, 2], clip 1: [1, 3]
    assert views[0, :, 0, 0, 0].tolist() == clip_indices(4, 2, 0, 2) == [0, 2]
    assert views[3, :, 0, 0, 0].tolist() == clip_indices(4, 2, 1, 2) == [1, 3]
    # the source column under each crop's x = 0: resized x = 0, 5, 10 -> source (x + 0.5) * 2 - 0.5
    left_columns = [int(views[c, 0, 10, 0, 2]) for c in range(3)]
    assert left_columns[0] <= 1 and abs(left_columns[1] - 10.5) <= 1.5 and abs(left_columns[2] - 20.5) <= 1.5


def test_rotation_metadata_is_applied(tmp_path):
    """A phone stores the frame sideways with a display rotation; the model must see it upright."""
    upright = np.zeros((8, 48, 32, 3), dtype=np.uint8)  # 32 wide, 48 tall as displayed
    upright[:, :12] = 255  # a white band at the top
    stored = np.rot90(upright, -1, axes=(1, 2))  # turned clockwise for storage: 48 wide, 32 tall
    path = write_video(tmp_path / "phone.mp4", np.ascontiguousarray(stored), rotation=90)
    clip = read_video_views(path, 2, FrameTransform(32, None))[0]  # no resize: crop 32x32 of the 32x48 shown
    column = clip[0, :, 16, 0].astype(int)
    assert column[:4].min() > 200 and column[-8:].max() < 60, column  # the band is at the top, not the side
