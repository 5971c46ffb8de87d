"""Class names for a model's outputs, so predictions read "abseiling" rather than "0".

Checkpoints carry no class names; users have them in one of the files the action-recognition world
ships, all read by ``read_labels`` (chosen by suffix):

- ``.json``: a list of names, or an object ``{"0": "abseiling", "1": "air drumming", ...}``;
- ``.csv``: Kinetics' ``kinetics_400_labels.csv``: a header with ``id`` and ``name`` columns, then one
  row per class, in any order (each row is placed by its id);
- anything else: one name per line, line i naming class i - 1 (mmaction2's ``label_map_k400.txt``).

Ids must run 0..n-1, each exactly once, and names must be distinct: a gap or a repeat would silently
shift or merge classes, so both are errors.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

from tamdeploy.errors import DataError
from tamdeploy.files import read_text_file


def read_labels(path: str | Path) -> list[str]:
    """The class names in PATH, index i naming output i. Surrounding whitespace is stripped and
    trailing blank lines ignored; a missing, unreadable or empty file, an empty name, a repeated name
    or an id outside 0..n-1: DataError."""
    path = Path(path)
    text = read_text_file(path, "labels file", "the file that lists the class names")
    suffix = path.suffix.lower()
    if suffix == ".json":
        names = _json_names(text, path)
    elif suffix == ".csv":
        names = _csv_names(text, path)
    else:
        names = _text_names(text, path)
    if not names:
        raise DataError(f"labels file {path} holds no class names")
    return names


def check_label_count(names: Sequence[str], num_classes: int, path: str | Path) -> None:
    """DataError unless there is one name per model output: a mismatched file names the wrong classes."""
    if len(names) != num_classes:
        raise DataError(f"{path} holds {len(names)} names but the model has {num_classes} classes; "
                        "give the labels file of the data set the model was trained on")




def _text_names(text: str, path: Path) -> list[str]:
    lines = [line.strip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    for number, name in enumerate(lines, 1):
        if not name:
            raise DataError(f"{path} line {number} is empty; every line up to the last name must hold a class "
                            "name (line i names class i - 1)")
    _check_distinct([(str(number), name) for number, name in enumerate(lines, 1)], path, "lines")
    return lines


def _json_names(text: str, path: Path) -> list[str]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{path} is not valid JSON (line {e.lineno}: {e.msg})") from e
    expected = 'a list of names or an object {"0": "name", ...}'
    if isinstance(data, list):
        entries = [(index, name, str(index)) for index, name in enumerate(data)]
    elif isinstance(data, dict):
        entries = []
        for key, name in data.items():
            index = _parse_id(key)
            if index is None:
                raise DataError(f"{path}: key {key!r} is not a class id; expected {expected}")
            entries.append((index, name, repr(key)))
    else:
        raise DataError(f"{path} holds a JSON {type(data).__name__}; expected {expected}")
    for index, name, _ in entries:
        if not isinstance(name, str) or not name.strip():
            raise DataError(f"{path}: class {index} has {json.dumps(name)} as its name; names must be non-empty text")
    names = _place_by_id([(index, name.strip(), where) for index, name, where in entries], path, "keys")
    _check_distinct([(str(index), name) for index, name in enumerate(names)], path, "ids")
    return names


def _csv_names(text: str, path: Path) -> list[str]:
    rows = [(number, row) for number, row in enumerate(csv.reader(text.splitlines()), 1) if any(f.strip() for f in row)]
    if not rows:
        return []
    header_line, header = rows[0]
    columns = [field.strip().lower() for field in header]
    if "id" not in columns or "name" not in columns:
        raise DataError(f"{path} line {header_line}: expected a header with 'id' and 'name' columns "
                        f"(like 'id,name'), got {','.join(header)!r}")
    id_col, name_col = columns.index("id"), columns.index("name")
    entries = []
    for number, row in rows[1:]:
        if len(row) != len(header):
            raise DataError(f"{path} line {number}: expected {len(header)} fields like the header, got {len(row)}")
        index, name = _parse_id(row[id_col]), row[name_col].strip()
        if index is None:
            raise DataError(f"{path} line {number}: id {row[id_col]!r} is not a non-negative integer")
        if not name:
            raise DataError(f"{path} line {number}: the name of class {index} is empty")
        entries.append((index, name, str(number)))
    names = _place_by_id(entries, path, "lines")
    line_of = {index: where for index, _, where in entries}
    _check_distinct([(line_of[index], name) for index, name in enumerate(names)], path, "lines")
    return names


def _parse_id(text: str) -> int | None:
    text = text.strip()
    return int(text) if text.isascii() and text.isdigit() else None


def _place_by_id(entries: list[tuple[int, str, str]], path: Path, what: str) -> list[str]:
    """Names ordered by id from (id, name, where) triples, ``where`` being the line or JSON key that gave
    the name (``what``: "lines" or "keys"), for messages; ids must be 0..n-1, each once."""
    placed: dict[int, tuple[str, str]] = {}
    for index, name, where in entries:
        if index in placed:
            raise DataError(f"{path} {what} {placed[index][0]} and {where} both give class id {index}; "
                            "each id 0..n-1 must appear once")
        placed[index] = (where, name)
    missing = sorted(set(range(len(placed))) - set(placed))
    if missing:
        shown = ", ".join(map(str, missing[:5])) + (", ..." if len(missing) > 5 else "")
        raise DataError(f"{path}: class ids must run 0..{len(placed) - 1} with none missing; missing {shown} "
                        f"(highest id is {max(placed)})")
    return [placed[index][1] for index in range(len(placed))]


def _check_distinct(entries: Sequence[tuple[str, str]], path: Path, what: str) -> None:
    """DataError on the first name of (where, name) pairs that appears twice, naming both places
    (``what``: "lines" or "ids")."""
    first: dict[str, str] = {}
    for where, name in entries:
        if name in first:
            raise DataError(f"{path} {what} {first[name]} and {where} both name {name!r}; class names must be distinct")
        first[name] = where
