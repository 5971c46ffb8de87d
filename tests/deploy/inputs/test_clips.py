"""Clips from real files: TSN sampling, crop, resize and normalisation checked against known pixels."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from helpers.video import (
    coded_frames,
    expected_clip,
    flat_colour,
    flat_frames,
    pixels,
    write_frame_folder,
    write_garbage,
    write_image,
    write_video,
)

from tamdeploy.deploy.inputs import video
from tamdeploy.deploy.inputs.clips import ClipSpec, DataSummary, iter_clips, load_batch, random_clips
from tamdeploy.deploy.inputs.video import crop_origin, natural_key, resized_size, segment_indices
from tamdeploy.errors import DataError

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def spec(num_segments: int | None = 8, input_size: int = 16, resize: bool = False) -> ClipSpec:
    return ClipSpec(num_segments, input_size, MEAN, STD, resize)


def clips(path: Path, clip_spec: ClipSpec, **kw) -> list:
    return list(iter_clips(path, clip_spec, progress=False, **kw))


def tsn_test_indices(num_frames: int, num_segments: int) -> list[int]:
    """TSN's ``_get_test_indices`` with new_length = 1, 0-based (TSN adds 1 for 1-based file names)."""
    tick = (num_frames - 1 + 1) / float(num_segments)
    return [int(tick / 2.0 + tick * x) for x in range(num_segments)]


# --- sampling and geometry rules -----------------------------------------------------------------

def test_segment_indices_match_tsn_test_sampling():
    for num_segments in (1, 3, 8, 16):
        for num_frames in range(1, 200):
            assert segment_indices(num_frames, num_segments) == tsn_test_indices(num_frames, num_segments)
    assert segment_indices(20, 8) == [1, 3, 6, 8, 11, 13, 16, 18]
    assert segment_indices(3, 8) == [0, 0, 0, 1, 1, 2, 2, 2]  # short clips repeat frames
    assert segment_indices(9, 1) == [4]  # image models: the middle frame


def test_resize_and_crop_geometry():
    assert ClipSpec(8, 224, MEAN, STD).scale_size == 256
    assert ClipSpec(8, 112, MEAN, STD).scale_size == 128
    assert resized_size(340, 256, 256) == (340, 256)
    assert resized_size(320, 240, 256) == (341, 256)  # 341.33 truncated, like torchvision
    assert resized_size(240, 320, 256) == (256, 341)
    assert crop_origin(341, 256, 224) == (58, 16)  # round(58.5) = 58: Python rounding, like torchvision
    assert crop_origin(40, 30, 16) == (12, 7)


def test_natural_order_of_frame_names():
    names = ["img_10.png", "img_2.png", "img_1.png", "a.png"]
    assert sorted(names, key=lambda n: natural_key(Path(n))) == [
        "a.png", "img_1.png", "img_2.png", "img_10.png"]


# --- frame folders (lossless: exact values) -------------------------------------------------------

def test_frame_folder_decodes_to_exact_normalised_clip(tmp_path):
    frames = coded_frames(20, 30, 40)  # R = frame index, G = row, B = column
    folder = write_frame_folder(tmp_path / "clip", frames)
    (clip,) = clips(folder, spec())
    assert clip.source == str(folder)
    assert clip.array.dtype == np.float32 and clip.array.shape == (8, 3, 16, 16)
    chosen = [1, 3, 6, 8, 11, 13, 16, 18]
    left, top = 12, 7  # round((40 - 16) / 2), round((30 - 16) / 2)
    np.testing.assert_allclose(clip.array, expected_clip(frames[chosen, top:top + 16, left:left + 16], MEAN, STD),
                               rtol=0, atol=1e-6)
    back = np.rint(pixels(clip.array, MEAN, STD)).astype(int)
    assert back[:, 0, 0, 0].tolist() == chosen
    assert (back[0, :, 0, 1] == np.arange(top, top + 16)).all()
    assert (back[0, 0, :, 2] == np.arange(left, left + 16)).all()


def test_frame_folder_with_unpadded_names_keeps_frame_order(tmp_path):
    frames = coded_frames(12, 16, 16)
    folder = write_frame_folder(tmp_path / "clip", frames, pattern="frame{}.png", start=0)
    (clip,) = clips(folder, spec(num_segments=4))
    back = np.rint(pixels(clip.array, MEAN, STD)).astype(int)
    assert back[:, 0, 0, 0].tolist() == segment_indices(12, 4) == [1, 4, 7, 10]


def test_short_frame_folder_repeats_frames(tmp_path):
    folder = write_frame_folder(tmp_path / "short", coded_frames(3, 16, 16))
    (clip,) = clips(folder, spec())
    back = np.rint(pixels(clip.array, MEAN, STD)).astype(int)
    assert back[:, 0, 0, 0].tolist() == [0, 0, 0, 1, 1, 2, 2, 2]


def test_resize_scales_shorter_side_then_crops(tmp_path):
    folder = write_frame_folder(tmp_path / "clip", flat_frames(10, 30, 40))
    (clip,) = clips(folder, spec(input_size=16, resize=True))  # 40x30 -> 24x18 (scale_size 18) -> 16x16
    assert clip.array.shape == (8, 3, 16, 16)
    back = pixels(clip.array, MEAN, STD)
    for t, i in enumerate(segment_indices(10, 8)):
        np.testing.assert_allclose(back[t], np.broadcast_to(flat_colour(i), (16, 16, 3)), atol=1.0)


def test_frame_folder_of_jpegs(tmp_path):
    folder = write_frame_folder(tmp_path / "clip", flat_frames(8, 32, 32), pattern="img_{:05d}.jpg")
    (clip,) = clips(folder, spec(input_size=32))
    np.testing.assert_allclose(pixels(clip.array, MEAN, STD)[:, 16, 16], [flat_colour(i) for i in range(8)], atol=3)


# --- videos (lossy: flat colours, a tolerance) ----------------------------------------------------

@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".avi", ".webm", ".mov"])
def test_video_decodes_to_expected_colours(tmp_path, suffix):
    path = write_video(tmp_path / f"clip{suffix}", flat_frames(20, 48, 64))
    (clip,) = clips(path, spec(input_size=32, resize=True))  # 64x48 -> 49x37 -> 32x32
    assert clip.array.shape == (8, 3, 32, 32) and clip.array.dtype == np.float32
    back = pixels(clip.array, MEAN, STD)
    expected = np.array([flat_colour(i) for i in [1, 3, 6, 8, 11, 13, 16, 18]], dtype=np.float64)
    np.testing.assert_allclose(back, np.broadcast_to(expected[:, None, None, :], back.shape), atol=5)


def test_short_video_repeats_frames(tmp_path):
    path = write_video(tmp_path / "short.mp4", flat_frames(3, 32, 32))
    (clip,) = clips(path, spec(input_size=32))
    back = pixels(clip.array, MEAN, STD)[:, 16, 16]
    np.testing.assert_allclose(back, [flat_colour(i) for i in [0, 0, 0, 1, 1, 2, 2, 2]], atol=5)


def test_overcounted_video_samples_from_the_frames_that_decode(tmp_path, monkeypatch):
    path = write_video(tmp_path / "clip.mp4", flat_frames(20, 32, 32))
    def overcounting(real):  # a container that claims more frames than it has
        return lambda container, stream: dataclasses.replace(real(container, stream), count=40)

    for name in ("_constant_rate_timeline", "_demuxed_timeline"):
        monkeypatch.setattr(video, name, overcounting(getattr(video, name)))
    (clip,) = clips(path, spec(input_size=32))
    back = pixels(clip.array, MEAN, STD)[:, 16, 16]
    np.testing.assert_allclose(back, [flat_colour(i) for i in segment_indices(20, 8)], atol=5)


# --- image models ---------------------------------------------------------------------------------

def test_image_model_takes_each_image_and_a_video_middle_frame(tmp_path):
    frames = coded_frames(3, 20, 20)
    for i, frame in enumerate(frames):
        write_image(tmp_path / f"im{i}.png", frame)
    write_video(tmp_path / "v.mp4", flat_frames(9, 32, 32))
    got = clips(tmp_path, spec(num_segments=None))
    assert [Path(c.source).name for c in got] == ["im0.png", "im1.png", "im2.png", "v.mp4"]
    assert all(c.array.shape == (3, 16, 16) for c in got)
    np.testing.assert_allclose(got[1].array, expected_clip(frames[1, 2:18, 2:18], MEAN, STD), atol=1e-6)
    np.testing.assert_allclose(pixels(got[3].array, MEAN, STD)[8, 8], flat_colour(4), atol=5)


# --- .npy arrays ------------------------------------------------------------------------------------

def test_npy_single_and_batched(tmp_path):
    rng = np.random.default_rng(0)
    one = rng.standard_normal((8, 3, 16, 16)).astype(np.float32)
    many = rng.standard_normal((3, 8, 3, 16, 16))  # float64 is accepted and cast
    np.save(tmp_path / "a_one.npy", one)
    np.save(tmp_path / "b_many.npy", many)
    got = clips(tmp_path, spec())
    assert [c.source for c in got] == [str(tmp_path / "a_one.npy")] + [f"{tmp_path / 'b_many.npy'}[{i}]"
                                                                       for i in range(3)]
    np.testing.assert_array_equal(got[0].array, one)
    np.testing.assert_array_equal(np.stack([c.array for c in got[1:]]), many.astype(np.float32))
    assert all(c.array.dtype == np.float32 for c in got)
    assert len(clips(tmp_path / "b_many.npy", spec(), limit=2)) == 2


def test_npy_for_image_model(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((5, 3, 16, 16), np.float32))
    batch = load_batch(tmp_path / "x.npy", spec(num_segments=None), progress=False)
    assert batch.array.shape == (5, 3, 16, 16)


@pytest.mark.parametrize("shape", [(8, 3, 32, 32), (4, 3, 16, 16), (2, 8, 16, 16, 3), (3, 16, 16)])
def test_npy_of_wrong_shape_says_what_was_expected(tmp_path, shape):
    np.save(tmp_path / "bad.npy", np.zeros(shape, np.float32))
    with pytest.raises(DataError, match=r"bad\.npy.*\[8, 3, 16, 16\] or \[N, 8, 3, 16, 16\]"):
        clips(tmp_path / "bad.npy", spec())


def test_npy_of_integers_or_nan_is_refused(tmp_path):
    np.save(tmp_path / "u8.npy", np.zeros((8, 3, 16, 16), np.uint8))
    with pytest.raises(DataError, match="uint8.*normalised"):
        clips(tmp_path / "u8.npy", spec())
    np.save(tmp_path / "nan.npy", np.full((8, 3, 16, 16), np.nan, np.float32))
    with pytest.raises(DataError, match="NaN"):
        clips(tmp_path / "nan.npy", spec())


# --- directories, skipping and errors --------------------------------------------------------------

def test_directory_walk_is_sorted_and_skips_undecodable_files(tmp_path, capsys):
    write_video(tmp_path / "a.mp4", flat_frames(10, 32, 32))
    write_garbage(tmp_path / "b_corrupt.mp4")
    write_frame_folder(tmp_path / "c_frames", coded_frames(8, 20, 20))
    (tmp_path / "d_nested").mkdir()
    write_garbage(tmp_path / "d_nested" / "x.npy")
    np.save(tmp_path / "d_nested" / "y.npy", np.zeros((8, 3, 16, 16), np.float32))
    (tmp_path / "notes.txt").write_text("not data")
    summary = DataSummary()
    got = clips(tmp_path, spec(), summary=summary)
    assert [Path(c.source).name for c in got] == ["a.mp4", "c_frames", "y.npy"]
    assert [Path(s).name for s in summary.used] == ["a.mp4", "c_frames", "y.npy"]
    assert [Path(s.source).name for s in summary.skipped] == ["b_corrupt.mp4", "x.npy"]
    err = capsys.readouterr().err
    assert "b_corrupt.mp4" in err and "x.npy" in err and "skipped" in err
    assert summary.to_dict()["skipped"][0]["source"] == str(tmp_path / "b_corrupt.mp4")


def test_load_batch_stacks_and_warns_when_short(tmp_path, capsys):
    for name in ("a", "b"):
        write_video(tmp_path / f"{name}.mp4", flat_frames(10, 32, 32))
    write_garbage(tmp_path / "c.mp4")
    batch = load_batch(tmp_path, spec(), samples=1, progress=False)
    assert batch.array.shape == (1, 8, 3, 16, 16) and batch.sources == [str(tmp_path / "a.mp4")]
    assert batch.summary.skipped == []  # stopped before reaching the corrupt file
    batch = load_batch(tmp_path, spec(), samples=5, progress=False)
    assert batch.array.shape == (2, 8, 3, 16, 16)
    assert [Path(s.source).name for s in batch.summary.skipped] == ["c.mp4"]
    assert "fewer than the 5 asked for" in capsys.readouterr().err


def test_undecodable_frame_in_folder_is_named(tmp_path):
    folder = write_frame_folder(tmp_path / "clip", coded_frames(8, 16, 16))
    write_garbage(folder / "img_00002.png")
    write_video(tmp_path / "ok.mp4", flat_frames(8, 32, 32))
    summary = DataSummary()
    assert len(clips(tmp_path, spec(), summary=summary)) == 1
    assert "img_00002.png" in summary.skipped[0].reason


def test_frames_smaller_than_input_without_resize_are_skipped(tmp_path):
    write_frame_folder(tmp_path / "small", coded_frames(8, 10, 12))
    with pytest.raises(DataError, match="no usable input.*12x10, smaller than the model's input 16x16"):
        clips(tmp_path, spec())


def test_images_beside_videos_are_left_out(tmp_path, capsys):
    write_video(tmp_path / "a.mp4", flat_frames(8, 32, 32))
    write_image(tmp_path / "cover.png", coded_frames(1, 16, 16)[0])
    got = clips(tmp_path, spec())
    assert [Path(c.source).name for c in got] == ["a.mp4"]
    assert "left out 1 image" in capsys.readouterr().err


def test_only_corrupt_files_is_an_error_naming_the_path(tmp_path):
    write_garbage(tmp_path / "x.mp4")
    write_garbage(tmp_path / "y.avi", seed=1)
    with pytest.raises(DataError, match=f"no usable input in {tmp_path}: 2 file"):
        clips(tmp_path, spec())


def test_single_corrupt_file_is_an_error_naming_it(tmp_path):
    write_garbage(tmp_path / "x.webm")
    with pytest.raises(DataError, match=r"cannot use .*x\.webm: cannot open it"):
        clips(tmp_path / "x.webm", spec())


def test_missing_empty_and_unsupported_paths(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        iter_clips(tmp_path / "nope", spec())
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty holds no videos"):
        iter_clips(tmp_path / "empty", spec())
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(DataError, match="unsupported file type '.txt'"):
        iter_clips(tmp_path / "x.txt", spec())
    write_image(tmp_path / "one.png", coded_frames(1, 16, 16)[0])
    with pytest.raises(DataError, match="single image"):
        iter_clips(tmp_path / "one.png", spec())
    with pytest.raises(DataError, match="at least 1"):
        load_batch(tmp_path / "one.png", spec(num_segments=None), samples=0)


# --- specs and random data -------------------------------------------------------------------------

def test_clip_spec_from_model_config_and_metadata():
    from tamdeploy.exporters.metadata import ModelMetadata
    from tamdeploy.models.config import ModelConfig

    config = ModelConfig(arch="tanet_r50", block="tam", depth=50, num_classes=10, num_segments=8, input_size=160)
    clip_spec = ClipSpec.from_config(config)
    assert clip_spec == ClipSpec(8, 160, MEAN, STD)
    assert clip_spec.sample_shape == (8, 3, 160, 160) == config.input_shape
    meta = ModelMetadata(config=config, input_name="video", input_layout="NTCHW", precision="fp32",
                         checkpoint_sha256="0" * 64, tam_op="plugin")
    assert ClipSpec.from_metadata(meta, resize=False) == ClipSpec(8, 160, MEAN, STD, resize=False)
    with pytest.raises(DataError):
        ClipSpec(0, 224, MEAN, STD)


def test_random_clips_are_deterministic_and_in_range():
    a = random_clips(spec(), 3, seed=1)
    assert a.array.shape == (3, 8, 3, 16, 16) and a.array.dtype == np.float32
    np.testing.assert_array_equal(a.array, random_clips(spec(), 3, seed=1).array)
    assert not np.array_equal(a.array, random_clips(spec(), 3, seed=2).array)
    back = pixels(a.array, MEAN, STD)
    assert back.min() > -1e-3 and back.max() < 255 + 1e-3
    assert random_clips(spec(num_segments=None), 2).array.shape == (2, 3, 16, 16)
