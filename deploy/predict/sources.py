"""What ``tamdeploy predict VIDEOS...`` means by VIDEOS: video files, frame folders, images (image
models), folders walked for them, and list files (``.txt`` / ``.lst``, one path per line, relative to
the list's folder). A path named on the command line that does not exist is the user's typo (an
error); a listed or walked file that fails to decode is a per-video failure, reported with the rest."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tamdeploy.deploy.inputs.clips import ClipSpec, frame_images
from tamdeploy.deploy.inputs.video import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, natural_key
from tamdeploy.errors import DataError
from tamdeploy.files import read_text_file

LIST_SUFFIXES = (".txt", ".lst")


def expand_sources(paths: Sequence[str | Path], spec: ClipSpec) -> list[str]:
    """Every input PATHS name, in order (folders walked in natural name order)."""
    found: list[str] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise DataError(f"{path} does not exist")
        if path.is_dir():
            walked = list(_walk(path, spec))
            if not walked:
                raise DataError(f"{path} holds no videos ({', '.join(VIDEO_EXTENSIONS)})"
                                + ("" if spec.is_video else " or images"))
            found += walked
        elif path.suffix.lower() in LIST_SUFFIXES:
            found += _listed(path)
        elif path.suffix.lower() in VIDEO_EXTENSIONS or path.suffix.lower() in IMAGE_EXTENSIONS:
            found.append(str(path))
        else:
            raise DataError(f"{path}: unsupported file type {path.suffix!r}; give videos "
                            f"({', '.join(VIDEO_EXTENSIONS)}), frame folders, images, folders or a list file (.txt)")
    return found


def _walk(directory: Path, spec: ClipSpec):
    """A folder holding only images is one clip (a frame folder) for a video model; otherwise its videos,
    its images (image models) and its subfolders, in natural name order."""
    children = sorted((p for p in directory.iterdir() if not p.name.startswith(".")), key=natural_key)
    files = [p for p in children if p.is_file()]
    if spec.is_video and files and not any(p.is_dir() for p in children) and frame_images(directory) \
            and not any(p.suffix.lower() in VIDEO_EXTENSIONS for p in files):
        yield str(directory)
        return
    for child in children:
        suffix = child.suffix.lower()
        if child.is_dir():
            yield from _walk(child, spec)
        elif suffix in VIDEO_EXTENSIONS or (suffix in IMAGE_EXTENSIONS and not spec.is_video):
            yield str(child)


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
