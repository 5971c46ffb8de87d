"""What ``tamdeploy predict VIDEOS...`` means by VIDEOS: video files, frame folders, images (image
models), folders walked for them, and list files (``.txt`` / ``.lst``, one path per line, relative to
the list's folder). A path named on the command line that does not exist is the user's typo (an
error); a listed or walked file that fails to decode is a per-video failure, reported with the rest."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tamdeploy.deploy.inputs.clips import ClipSpec, find_sources
from tamdeploy.errors import DataError
from tamdeploy.files import read_text_file

LIST_SUFFIXES = (".txt", ".lst")


def expand_sources(paths: Sequence[str | Path], spec: ClipSpec) -> list[str]:
    """Every input PATHS name, in order: folders walked as verify and bench walk them (``find_sources``),
    list files read line by line."""
    found: list[str] = []
    for raw in paths:
        path = Path(raw)
        if path.is_file() and path.suffix.lower() in LIST_SUFFIXES:
            found += _listed(path)
            continue
        for source in find_sources(path, spec):  # a missing path or an unsupported file: one line
            if source.kind == "npy":
                raise DataError(f"{source.path}: predict labels videos, frame folders and images; .npy arrays are "
                                "model inputs for verify and bench")
            found.append(str(source.path))
    return found


def _listed(list_file: Path) -> list[str]:
    lines = read_text_file(list_file, "list", "a list of videos, one path per line").splitlines()
    entries = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not entries:
        raise DataError(f"the list {list_file} names no videos")
    return [_listed_path(entry, list_file.parent) for entry in entries]


def _listed_path(entry: str, folder: Path) -> str:
    """A line of a list: a path; or an mmaction2 annotation line (``path label``), whose path is used."""
    path = Path(entry) if Path(entry).is_absolute() else folder / entry
    if not path.exists():
        head, _, tail = entry.rpartition(" ")
        labelled = Path(head.strip()) if Path(head.strip()).is_absolute() else folder / head.strip()
        if head and tail.lstrip("-").isdigit() and labelled.exists():
            return str(labelled)
    return str(path)
