"""Annotation lists for eval: every format, path resolution, Kinetics' folder layouts, and each mistake
named with its file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from tamdeploy.deploy.predict.annotations import (
    CSV,
    KINETICS_CSV,
    RAWFRAMES_LIST,
    VIDEO_LIST,
    Annotated,
    read_annotations,
)
from tamdeploy.errors import DataError

NAMES = ["abseiling", "air drumming", "passing American football (in game)"]
KINETICS_HEADER = "label,youtube_id,time_start,time_end,split,is_cc\n"  # the real Kinetics-400 val.csv header


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    return path


def test_video_list_paths_with_spaces_comments_and_blank_lines(tmp_path):
    text = "# mmaction2 list\nabseiling/a.mp4 0\n\n  my videos/clip one.mp4\t 2  \n/abs/b.avi 1\n"
    ann = write(tmp_path, "val.txt", text)
    result = read_annotations(ann)
    assert result.format == VIDEO_LIST
    assert result.items == [
        Annotated(tmp_path / "abseiling/a.mp4", 0, "video", 2),
        Annotated(tmp_path / "my videos/clip one.mp4", 2, "video", 4),
        Annotated(Path("/abs/b.avi"), 1, "video", 5),
    ]


def test_data_root_resolves_relative_paths(tmp_path):
    ann = write(tmp_path, "val.txt", "a.mp4 0\n")
    root = tmp_path / "videos"
    root.mkdir()
    assert read_annotations(ann, data_root=root).items[0].source == root / "a.mp4"
    assert read_annotations(ann, data_root=str(root)).items[0].source == root / "a.mp4"


def test_data_root_must_be_a_folder(tmp_path):
    ann = write(tmp_path, "val.txt", "a.mp4 0\n")
    with pytest.raises(DataError, match=r"data root .*missing is not a folder"):
        read_annotations(ann, data_root=tmp_path / "missing")


def test_missing_video_is_not_a_parse_error(tmp_path):
    ann = write(tmp_path, "val.txt", "nowhere.mp4 0\n")
    assert read_annotations(ann).items[0].source == tmp_path / "nowhere.mp4"


def test_rawframes_list(tmp_path):
    ann = write(tmp_path, "val_rawframes.txt", "abseiling/a 300 0\nframes of b 120 1\n")
    result = read_annotations(ann, num_classes=2)
    assert result.format == RAWFRAMES_LIST
    assert result.items == [
        Annotated(tmp_path / "abseiling/a", 0, "frames", 1, 300),
        Annotated(tmp_path / "frames of b", 1, "frames", 2, 120),
    ]


def test_video_path_ending_in_a_number_is_a_video_list(tmp_path):
    result = read_annotations(write(tmp_path, "val.txt", "clip 300.mp4 1\n"))
    assert result.format == VIDEO_LIST
    assert result.items[0].source == tmp_path / "clip 300.mp4"


@pytest.mark.parametrize(("text", "message"), [
    ("a.mp4 0\nfoo\n", r"val\.txt line 2: expected 'path label' \(mmaction2 video list\), got 'foo'"),
    ("a.mp4 0\n\n# c\nb.mp4 x\n", r"val\.txt line 4: expected 'path label'"),
    ("a.mp4 0\nb.mp4 1 3\n", r"val\.txt line 2: several labels .*multi-label lists are not supported"),
    ("a.mp4 0 3 4\n", r"val\.txt line 1: several labels"),
    ("a.mp4 0\nb.mp4 -1\n", r"val\.txt line 2: label -1 is negative"),
    ("a.mp4 0\nb.mp4 10\n", r"val\.txt line 2: label 10 is out of range: the model has 10 classes \(0\.\.9\)"),
    ("a 30 0\nb 0\n", r"val\.txt line 2: expected 'frame_dir total_frames label' \(mmaction2 rawframes list\)"),
    ("a 30 0\nb x 1\n", r"val\.txt line 2: expected 'frame_dir total_frames label'"),
    ("a 30 0\nb 0 1\n", r"val\.txt line 2: total_frames is 0"),
    ("a 30 0\nb 30 12\n", r"val\.txt line 2: label 12 is out of range"),
])
def test_list_errors_name_the_line(tmp_path, text, message):
    with pytest.raises(DataError, match=message):
        read_annotations(write(tmp_path, "val.txt", text), num_classes=10)


def test_class_names_bound_labels_when_num_classes_is_not_given(tmp_path):
    ann = write(tmp_path, "val.txt", "a.mp4 3\n")
    with pytest.raises(DataError, match=r"line 1: label 3 is out of range: the model has 3 classes"):
        read_annotations(ann, class_names=NAMES)
    assert read_annotations(ann).items[0].label == 3  # nothing to bound it by


def test_csv_path_label_with_indices_names_and_folders(tmp_path):
    (tmp_path / "clips" / "frames b").mkdir(parents=True)
    ann = write(tmp_path, "val.csv", "label,path\n0,clips/a b.mp4\nair drumming,clips/frames b\n1,/abs/c.mp4\n")
    result = read_annotations(ann, class_names=NAMES)
    assert result.format == CSV
    assert result.items == [
        Annotated(tmp_path / "clips/a b.mp4", 0, "video", 2),
        Annotated(tmp_path / "clips/frames b", 1, "frames", 3),
        Annotated(Path("/abs/c.mp4"), 1, "video", 4),
    ]


def test_csv_header_detected_without_csv_suffix(tmp_path):
    result = read_annotations(write(tmp_path, "val.txt", "path,label\na.mp4,1\n"))
    assert result.format == CSV
    assert result.items == [Annotated(tmp_path / "a.mp4", 1, "video", 2)]


@pytest.mark.parametrize(("text", "message"), [
    ("file,class\na.mp4,0\n", r"val\.csv line 1: expected a header with 'path' and 'label' columns"),
    ("a.mp4,0\n", r"val\.csv line 1: expected a header"),
    ("path,label\na.mp4,0\nb.mp4\n", r"val\.csv line 3: expected 2 comma-separated fields"),
    ("path,label\na.mp4,0\n,1\n", r"val\.csv line 3: the path is empty"),
    ("path,label\na.mp4,\n", r"val\.csv line 2: the label is empty"),
    ("path,label\na.mp4,0\nb.mp4,-2\n", r"val\.csv line 3: label -2 is negative"),
    ("path,label\na.mp4,0\nb.mp4,abseilng\n", r"val\.csv line 3: unknown class 'abseilng'.*did you mean 'abseiling'\?"),
    ("path,label\na.mp4,zzzzzz\n", r"val\.csv line 2: unknown class 'zzzzzz'.*check that --labels is the right file"),
    ("path,label\n", r"val\.csv holds a header but no annotations"),
])
def test_csv_errors_name_the_line(tmp_path, text, message):
    with pytest.raises(DataError, match=message):
        read_annotations(write(tmp_path, "val.csv", text), class_names=NAMES)


def test_csv_class_name_without_labels_says_to_pass_labels(tmp_path):
    ann = write(tmp_path, "val.csv", "path,label\na.mp4,abseiling\n")
    with pytest.raises(DataError, match=r"val\.csv line 2: label 'abseiling' is a class name; pass --labels"):
        read_annotations(ann)


def test_kinetics_csv_all_three_layouts_and_fallback(tmp_path):
    root = tmp_path / "val"
    flat = touch(root / "flat0000000_000010_000020.mp4")
    spaced = touch(root / "passing American football (in game)" / "spaced00000_000001_000011.mkv")
    underscored = touch(root / "air_drumming" / "under000000_000120_000130.webm")
    ann = write(tmp_path, "kinetics_val.csv", KINETICS_HEADER
                + "abseiling,flat0000000,10,20,val,0\n"
                + '"passing American football (in game)",spaced00000,1,11,val,0\n'
                + "air drumming,under000000,120,130,val,0\n"
                + "abseiling,gone0000000,5,15,val,0\n")
    result = read_annotations(ann, data_root=root, class_names=NAMES)
    assert result.format == KINETICS_CSV
    assert result.items == [
        Annotated(flat, 0, "video", 2),
        Annotated(spaced, 2, "video", 3),
        Annotated(underscored, 1, "video", 4),
        Annotated(root / "gone0000000_000005_000015.mp4", 0, "video", 5),  # missing: decoding reports it
    ]


def test_kinetics_extensions_tried_in_order(tmp_path):
    touch(tmp_path / "abseiling" / "x_000000_000010.avi")
    touch(tmp_path / "abseiling" / "x_000000_000010.mp4")
    ann = write(tmp_path, "val.csv", "youtube_id,time_start,time_end,label\nx,0,10,abseiling\n")
    assert read_annotations(ann, class_names=NAMES).items[0].source == tmp_path / "abseiling" / "x_000000_000010.mp4"


@pytest.mark.parametrize(("text", "message"), [
    ("youtube_id,time_start,time_end,split\nx,0,10,test\n", r"val\.csv line 1: .*missing label \(the test split"),
    (KINETICS_HEADER + "abseiling,x,0,10,val,0\nabseiling,y,1.5,10,val,0\n",
     r"val\.csv line 3: time_start '1\.5' is not a whole number of seconds"),
    (KINETICS_HEADER + "abseiling,x,0,-10,val,0\n", r"val\.csv line 2: time_end '-10' is not a whole number"),
    (KINETICS_HEADER + "abseiling,,0,10,val,0\n", r"val\.csv line 2: the youtube_id is empty"),
    (KINETICS_HEADER + "air_drumming,x,0,10,val,0\n", r"val\.csv line 2: unknown class 'air_drumming'.*'air drumming'"),
    (KINETICS_HEADER + "abseiling,x,0,10\n", r"val\.csv line 2: expected 6 comma-separated fields"),
])
def test_kinetics_errors_name_the_line(tmp_path, text, message):
    with pytest.raises(DataError, match=message):
        read_annotations(write(tmp_path, "val.csv", text), class_names=NAMES)


def test_kinetics_needs_class_names(tmp_path):
    ann = write(tmp_path, "val.csv", KINETICS_HEADER + "abseiling,x,0,10,val,0\n")
    with pytest.raises(DataError, match=r"val\.csv labels videos by class name; pass --labels"):
        read_annotations(ann)


def test_kinetics_label_beyond_the_model_classes(tmp_path):
    ann = write(tmp_path, "val.csv", KINETICS_HEADER + "abseiling,x,0,10,val,0\nair drumming,y,0,10,val,0\n")
    with pytest.raises(DataError, match=r"val\.csv line 3: label 1 is out of range: the model has 1 classes"):
        read_annotations(ann, class_names=NAMES, num_classes=1)


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n  \n"])
def test_empty_annotation_file(tmp_path, text):
    with pytest.raises(DataError, match=r"annotation file .*val\.txt holds no annotations"):
        read_annotations(write(tmp_path, "val.txt", text))


def test_missing_folder_and_undecodable_annotation_file(tmp_path):
    with pytest.raises(DataError, match=r"annotation file .*nope\.txt does not exist"):
        read_annotations(tmp_path / "nope.txt")
    with pytest.raises(DataError, match=r"is a folder"):
        read_annotations(tmp_path)
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00a")
    with pytest.raises(DataError, match=r"bin\.txt is not UTF-8"):
        read_annotations(tmp_path / "bin.txt")
