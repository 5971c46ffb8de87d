"""Class-name files: every format users have, and every mistake named with its file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tamdeploy.deploy.predict.labels import check_label_count, read_labels
from tamdeploy.errors import DataError


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_text_one_name_per_line_stripped_trailing_blanks_ignored(tmp_path):
    path = write(tmp_path, "label_map_k400.txt", "abseiling\n  air drumming \r\nanswering questions\n\n \n")
    assert read_labels(path) == ["abseiling", "air drumming", "answering questions"]


def test_text_without_suffix_and_with_byte_order_mark(tmp_path):
    path = tmp_path / "classes"
    path.write_bytes("\ufeffa\nb".encode())
    assert read_labels(path) == ["a", "b"]


def test_text_empty_line_in_the_middle_names_its_line(tmp_path):
    path = write(tmp_path, "labels.txt", "a\nb\n\nc\n")
    with pytest.raises(DataError, match=r"labels\.txt line 3 is empty"):
        read_labels(path)


def test_text_duplicate_names_both_lines(tmp_path):
    path = write(tmp_path, "labels.txt", "a\nb\nc\nb\n")
    with pytest.raises(DataError, match=r"labels\.txt lines 2 and 4 both name 'b'"):
        read_labels(path)


def test_kinetics_csv_placed_by_id(tmp_path):
    path = write(tmp_path, "kinetics_400_labels.csv",
                 'id,name\n2,"passing American football (in game)"\n0,abseiling\n1,air drumming\n\n')
    assert read_labels(path) == ["abseiling", "air drumming", "passing American football (in game)"]


def test_csv_columns_found_by_name(tmp_path):
    path = write(tmp_path, "labels.csv", "name,id\nb,1\na,0\n")
    assert read_labels(path) == ["a", "b"]


@pytest.mark.parametrize(("text", "message"), [
    ("index,label\n0,a\n", r"labels\.csv line 1: expected a header with 'id' and 'name'"),
    ("id,name\n0,a\nx,b\n", r"labels\.csv line 3: id 'x' is not a non-negative integer"),
    ("id,name\n0,a\n-1,b\n", r"labels\.csv line 3: id '-1'"),
    ("id,name\n0,a\n1\n", r"labels\.csv line 3: expected 2 fields"),
    ("id,name\n0,a\n1, \n", r"labels\.csv line 3: the name of class 1 is empty"),
    ("id,name\n0,a\n1,b\n0,c\n", r"labels\.csv lines 2 and 4 both give class id 0"),
    ("id,name\n0,a\n2,b\n3,c\n", r"class ids must run 0\.\.2 with none missing; missing 1"),
    ("id,name\n1,a\n0,b\n2,a\n", r"labels\.csv lines 2 and 4 both name 'a'"),
])
def test_csv_errors(tmp_path, text, message):
    with pytest.raises(DataError, match=message):
        read_labels(write(tmp_path, "labels.csv", text))


def test_json_list_and_object(tmp_path):
    assert read_labels(write(tmp_path, "a.json", json.dumps(["x", " y "]))) == ["x", "y"]
    assert read_labels(write(tmp_path, "b.json", json.dumps({"1": "y", "0": "x"}))) == ["x", "y"]


@pytest.mark.parametrize(("data", "message"), [
    ({"0": "a", "two": "b"}, r"key 'two' is not a class id"),
    ({"0": "a", "2": "b"}, r"missing 1"),
    ({"0": "a", "00": "b"}, r"keys '0' and '00' both give class id 0"),
    (["a", 3], r"class 1 has 3 as its name"),
    (["a", ""], r"class 1 has \"\" as its name"),
    (["a", "b", "a"], r"ids 0 and 2 both name 'a'"),
    ({"names": ["a"]}, r"key 'names' is not a class id"),
    ("a", r"holds a JSON str"),
])
def test_json_errors(tmp_path, data, message):
    with pytest.raises(DataError, match=message):
        read_labels(write(tmp_path, "labels.json", json.dumps(data)))


def test_invalid_json(tmp_path):
    with pytest.raises(DataError, match=r"labels\.json is not valid JSON \(line 2"):
        read_labels(write(tmp_path, "labels.json", '[\n"a",,\n]'))


@pytest.mark.parametrize(("name", "text"), [("labels.txt", ""), ("labels.txt", "\n \n"), ("labels.csv", "id,name\n"),
                                            ("labels.json", "[]"), ("labels.json", "{}")])
def test_empty_files(tmp_path, name, text):
    with pytest.raises(DataError, match=r"holds no class names"):
        read_labels(write(tmp_path, name, text))


def test_missing_folder_and_undecodable(tmp_path):
    with pytest.raises(DataError, match=r"nope\.txt does not exist"):
        read_labels(tmp_path / "nope.txt")
    with pytest.raises(DataError, match=r"is a folder"):
        read_labels(tmp_path)
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00a")
    with pytest.raises(DataError, match=r"bin\.txt is not UTF-8"):
        read_labels(tmp_path / "bin.txt")


def test_check_label_count():
    check_label_count(["a", "b"], 2, "labels.txt")
    with pytest.raises(DataError, match=r"^labels\.txt holds 400 names but the model has 10 classes"):
        check_label_count([str(i) for i in range(400)], 10, "labels.txt")
