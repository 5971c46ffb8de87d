"""The labelled set eval scores a model on: which video (or frame folder) has which class, read from
the annotation lists users already have, so no conversion step stands between them and a number.

``read_annotations`` reads, telling the format from the suffix and the first annotation line:

- ``mmaction2-video``: mmaction2's video list, ``path label`` per line. The label is the last field,
  so paths may hold spaces. Multi-label lists (``path l1 l2 ...``) are not supported.
- ``mmaction2-rawframes``: mmaction2's rawframes list, ``frame_dir total_frames label`` per line;
  chosen when the first line ends in two integers that do not follow a video file name.
- ``csv``: a ``.csv`` file (or a first line that is such a header) with ``path`` and ``label``
  columns, in any order; a label is a class index or a class name (mapped through ``class_names``).
  A path that is an existing folder is a frame folder.
- ``kinetics-csv``: Kinetics' own CSV, columns ``youtube_id,time_start,time_end,label`` (plus ``split``,
  ``is_cc``, ... ignored); chosen when the header has a ``youtube_id`` column. The video is the file
  ``{youtube_id}_{time_start:06d}_{time_end:06d}`` with the first extension of ``VIDEO_EXTENSIONS`` that
  exists, in DATA_ROOT, DATA_ROOT/<label> or DATA_ROOT/<label with _ for spaces> (downloaders use all
  three layouts); if none exists, DATA_ROOT/<name>.mp4, which decoding later reports as missing. Labels
  are class names, so ``class_names`` is required.

Relative paths resolve under ``data_root`` (default: the annotation file's folder). Blank lines and
lines starting with ``#`` are skipped. Only the text is checked here: a video that does not exist is
the decoder's to report, one clip at a time, not a reason to refuse the whole list.
"""

from __future__ import annotations

import csv
import difflib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tamdeploy.deploy.inputs.video import VIDEO_EXTENSIONS
from tamdeploy.errors import DataError
from tamdeploy.files import read_text_file

VIDEO_LIST = "mmaction2-video"
RAWFRAMES_LIST = "mmaction2-rawframes"
CSV = "csv"
KINETICS_CSV = "kinetics-csv"

_INT = re.compile(r"-?[0-9]+")
# a video path followed by more than one integer: the labels of a multi-label list
_MULTI_LABEL = re.compile(r"(" + "|".join(re.escape(e) for e in VIDEO_EXTENSIONS) + r")(\s+-?[0-9]+)+$", re.I)
_KINETICS_COLUMNS = ("youtube_id", "time_start", "time_end", "label")


@dataclass(frozen=True)
class Annotated:
    """One labelled input: a video file or a frame folder, its class index, and where it was written."""

    source: Path  # a video file or a frame folder
    label: int
    kind: str  # "video" | "frames"
    line: int  # 1-based line of the annotation file it came from (for messages)
    total_frames: int | None = None  # rawframes lists give it


@dataclass(frozen=True)
class Annotations:
    """What ``read_annotations`` read: the items in file order and the format it took the file for
    (``VIDEO_LIST``, ``RAWFRAMES_LIST``, ``CSV`` or ``KINETICS_CSV``), for reports."""

    items: list[Annotated]
    format: str


def read_annotations(ann: str | Path, data_root: str | Path | None = None, class_names: Sequence[str] | None = None,
                     num_classes: int | None = None) -> Annotations:
    """The labelled inputs listed in ANN. Labels must lie in 0..num_classes-1 (``num_classes``, else
    the number of ``class_names``, else only non-negative). A missing, unreadable or empty file, a line
    that does not parse, a label out of range or an unknown class name: DataError naming the line."""
    ann = Path(ann)
    text = read_text_file(ann, "annotation file", "the list of labelled videos (.txt or .csv)")
    root = ann.parent if data_root is None else Path(data_root)
    if not root.is_dir():
        raise DataError(f"data root {root} is not a folder; give the folder the paths in {ann} are relative to")
    lines = [(number, line.strip()) for number, line in enumerate(text.splitlines(), 1)]
    lines = [(number, line) for number, line in lines if line and not line.startswith("#")]
    if not lines:
        raise DataError(f"annotation file {ann} holds no annotations (only blank lines or # comments)")
    bound = num_classes if num_classes is not None else (len(class_names) if class_names is not None else None)
    reader = _Reader(ann, root, class_names, bound)
    first = lines[0][1]
    if ann.suffix.lower() == ".csv" or _csv_format(_header(first)) is not None:
        return reader.csv_rows(lines)
    if _looks_rawframes(first):
        return Annotations([reader.rawframes_line(number, line) for number, line in lines], RAWFRAMES_LIST)
    return Annotations([reader.video_line(number, line) for number, line in lines], VIDEO_LIST)




def _header(line: str) -> list[str]:
    return [column.strip().lower() for column in next(csv.reader([line]))]


def _csv_format(columns: list[str]) -> str | None:
    if "youtube_id" in columns:
        return KINETICS_CSV
    if "path" in columns and "label" in columns:
        return CSV
    return None


def _looks_rawframes(line: str) -> bool:
    parts = line.rsplit(None, 2)
    # "clip.mp4 3 4" is a video with two labels (refused later), not a frame folder
    return len(parts) == 3 and all(_INT.fullmatch(p) for p in parts[1:]) and not _MULTI_LABEL.search(line)


@dataclass
class _Reader:
    """Turns lines of one annotation file into ``Annotated`` items, with messages that name the line."""

    ann: Path
    root: Path
    class_names: Sequence[str] | None
    bound: int | None
    _index: dict[str, int] = field(default_factory=dict, init=False)  # class name -> index
    _listings: dict[Path, frozenset[str]] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        if self.class_names is not None:
            self._index = {name: i for i, name in reversed(list(enumerate(self.class_names)))}  # first one wins

    def error(self, number: int, message: str) -> DataError:
        return DataError(f"{self.ann} line {number}: {message}")

    def resolve(self, path: str) -> Path:
        p = Path(path)
        return p if p.is_absolute() else self.root / p

    def checked(self, label: int, number: int) -> int:
        if label < 0:
            raise self.error(number, f"label {label} is negative; labels are class indices 0, 1, ...")
        if self.bound is not None and label >= self.bound:
            raise self.error(number, f"label {label} is out of range: the model has {self.bound} classes "
                                     f"(0..{self.bound - 1})")
        return label

    def class_index(self, name: str, number: int) -> int:
        if self.class_names is None:
            raise self.error(number, f"label {name!r} is a class name; pass --labels with the class names file "
                                     "(e.g. label_map_k400.txt) to map names to indices")
        if name not in self._index:
            close = difflib.get_close_matches(name, self.class_names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else " (check that --labels is the right file)"
            raise self.error(number, f"unknown class {name!r}: not among the {len(self.class_names)} class names"
                                     f"{hint}")
        return self.checked(self._index[name], number)

    def video_line(self, number: int, line: str) -> Annotated:
        parts = line.rsplit(None, 1)
        if len(parts) != 2 or not _INT.fullmatch(parts[1]):
            raise self.error(number, f"expected 'path label' (mmaction2 video list), got {line!r}")
        if _MULTI_LABEL.search(parts[0]):
            raise self.error(number, f"several labels in {line!r}: multi-label lists are not supported; "
                                     "give one label per video")
        return Annotated(self.resolve(parts[0]), self.checked(int(parts[1]), number), "video", number)

    def rawframes_line(self, number: int, line: str) -> Annotated:
        parts = line.rsplit(None, 2)
        if len(parts) != 3 or not all(_INT.fullmatch(p) for p in parts[1:]):
            raise self.error(number, f"expected 'frame_dir total_frames label' (mmaction2 rawframes list), "
                                     f"got {line!r}")
        total = int(parts[1])
        if total < 1:
            raise self.error(number, f"total_frames is {total}; a frame folder needs at least 1 frame")
        label = self.checked(int(parts[2]), number)
        return Annotated(self.resolve(parts[0]), label, "frames", number, total)

    def csv_rows(self, lines: list[tuple[int, str]]) -> Annotations:
        header_line, header = lines[0]
        columns = _header(header)
        fmt = _csv_format(columns)
        if fmt is None:
            raise self.error(header_line, f"expected a header with 'path' and 'label' columns, or Kinetics' "
                                          f"'youtube_id,time_start,time_end,label', got {header!r}")
        if fmt == KINETICS_CSV:
            missing = [c for c in _KINETICS_COLUMNS if c not in columns]
            if missing:
                raise self.error(header_line, f"a Kinetics CSV needs the columns {', '.join(_KINETICS_COLUMNS)}; "
                                              f"missing {', '.join(missing)} (the test split has no labels)")
            if self.class_names is None:
                raise DataError(f"{self.ann} labels videos by class name; pass --labels with the class names "
                                "file (e.g. label_map_k400.txt) to map names to indices")
        if len(lines) == 1:
            raise DataError(f"annotation file {self.ann} holds a header but no annotations")
        col = {name: columns.index(name) for name in ("path", "label", *_KINETICS_COLUMNS) if name in columns}
        items = []
        for number, line in lines[1:]:
            row = [value.strip() for value in next(csv.reader([line]))]
            if len(row) != len(columns):
                raise self.error(number, f"expected {len(columns)} comma-separated fields like the header "
                                         f"{header!r}, got {len(row)}: {line!r}")
            items.append(self.kinetics_row(number, row, col) if fmt == KINETICS_CSV else self.csv_row(number, row, col))
        return Annotations(items, fmt)

    def csv_row(self, number: int, row: list[str], col: dict[str, int]) -> Annotated:
        path, label = row[col["path"]], row[col["label"]]
        if not path:
            raise self.error(number, "the path is empty")
        if not label:
            raise self.error(number, "the label is empty")
        index = self.checked(int(label), number) if _INT.fullmatch(label) else self.class_index(label, number)
        source = self.resolve(path)
        return Annotated(source, index, "frames" if source.is_dir() else "video", number)

    def kinetics_row(self, number: int, row: list[str], col: dict[str, int]) -> Annotated:
        youtube_id, label = row[col["youtube_id"]], row[col["label"]]
        times = []
        for name in ("time_start", "time_end"):
            value = row[col[name]]
            if not _INT.fullmatch(value) or int(value) < 0:
                raise self.error(number, f"{name} {value!r} is not a whole number of seconds")
            times.append(int(value))
        if not youtube_id:
            raise self.error(number, "the youtube_id is empty")
        index = self.class_index(label, number)
        stem = f"{youtube_id}_{times[0]:06d}_{times[1]:06d}"
        return Annotated(self.kinetics_video(stem, label), index, "video", number)

    def kinetics_video(self, stem: str, label: str) -> Path:
        """The first existing ``stem + extension`` in the three layouts; else the flat ``.mp4``."""
        for folder in dict.fromkeys((self.root, self.root / label, self.root / label.replace(" ", "_"))):
            names = self.listing(folder)
            for extension in VIDEO_EXTENSIONS:
                if stem + extension in names:
                    return folder / (stem + extension)
        return self.root / (stem + VIDEO_EXTENSIONS[0])

    def listing(self, folder: Path) -> frozenset[str]:
        """The names in FOLDER, read once: one directory read per class instead of a stat per candidate."""
        if folder not in self._listings:
            try:
                self._listings[folder] = frozenset(os.listdir(folder))
            except OSError:  # a layout that is not used here
                self._listings[folder] = frozenset()
        return self._listings[folder]
