"""Writing the outputs a user names: atomically, with ordinary permissions, and with one-line errors.

- Atomic: a temp file in the target's directory, then ``os.replace``, so an interrupted run never leaves
  a half-written artifact behind (``staged_output`` lets the caller choose where the finished file goes,
  ``atomic_path`` / ``write_bytes_atomic`` put it at the target).
- Permissions: ``mkstemp`` creates files 0600, which a server running as another user (a Triton container,
  a service account) cannot read; the temp file gets what ``open()`` would give under the process umask.
- Errors: every ``OSError`` from writing a user-named output (a full disk, a read-only file system, a
  folder that is a file) becomes an ``OutputError`` that names the path, so the CLI prints one line and
  exits 2 instead of a traceback.
- ``written_outputs`` lists what this process has put in place, for the line printed on Ctrl-C.
"""

from __future__ import annotations

import errno
import hashlib
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tamdeploy.errors import DataError, TamdeployError

_written: list[Path] = []
# errors that mean "this output cannot be written here", as opposed to a bug or a missing input
WRITE_ERRORS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT, errno.EFBIG, errno.EIO,
                errno.ENAMETOOLONG}


class OutputError(TamdeployError):
    """An output the user named that cannot be written (disk full, read-only, not a folder, ...)."""


def written_outputs() -> list[Path]:
    """The files this process has put in place so far, oldest first."""
    return list(_written)


def describe_write_error(target: Path, error: OSError, needed: int | None = None) -> str:
    """One line saying why ``target`` could not be written and, where it helps, what to do."""
    where = target.parent if str(target.parent) else Path(".")
    if error.errno == errno.ENOSPC:
        size = f" ({needed / 1e6:.1f} MB needed)" if needed else ""
        return f"cannot write {target}: no space left on the device that holds {where}{size}; free some space or " \
               f"write elsewhere"
    if error.errno == errno.EROFS:
        return f"cannot write {target}: {where} is on a read-only file system; write elsewhere"
    if error.errno in (errno.EACCES, errno.EPERM):
        return f"cannot write {target}: permission denied"
    if error.errno == errno.EDQUOT:
        return f"cannot write {target}: disk quota exceeded"
    return f"cannot write {target}: {error.strerror or error}"


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and a.samefile(b))
    except OSError:
        return False


def check_writable(target: str | os.PathLike, inputs: Iterable[str | os.PathLike] = ()) -> Path:
    """The directory ``target`` would be written into; a one-line error if that cannot happen, so
    that long work fails before it starts rather than at the end. ``inputs``: the files the command
    reads, none of which an output may replace."""
    target = Path(target)
    directory = target.parent if str(target.parent) else Path(".")
    for source in map(Path, inputs):
        if _same_file(target, source):
            raise OutputError(f"cannot write {target}: it is this command's input {source}, which writing would "
                              f"destroy; choose another output path")
    if target.is_dir():
        raise OutputError(f"cannot write {target}: it is a directory")
    if directory.exists() and not directory.is_dir():
        raise OutputError(f"cannot write {target}: {directory} is a file, not a directory")
    if not directory.is_dir():
        raise OutputError(f"cannot write {target}: directory {directory} does not exist")
    if not os.access(directory, os.W_OK):
        raise OutputError(f"cannot write {target}: directory {directory} is not writable")
    return directory


def make_output_dir(path: str | os.PathLike) -> Path:
    """``path`` as a folder for outputs (made with its parents when missing), or a one-line OutputError."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"cannot use {path} as the output folder: it is a file; choose another folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(describe_write_error(path, e).replace(f"write {path}", f"create the folder {path}", 1)) \
            from e
    return path


def _umask() -> int:
    # reading the umask means setting it; it is set back at once (tamdeploy writes from one thread)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


class StagedOutput:
    """A temp file beside ``target`` that becomes a real output only when ``commit`` moves it (to the
    target, or elsewhere); left uncommitted, it is removed."""

    def __init__(self, target: Path, directory: Path) -> None:
        self.target = target
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
        os.close(fd)
        self.path = Path(name)
        self.committed: Path | None = None
        os.chmod(self.path, 0o666 & ~_umask())

    def commit(self, destination: str | os.PathLike | None = None) -> Path:
        """Flush the temp file to disk and move it to ``destination`` (default: the target)."""
        destination = Path(destination) if destination is not None else self.target
        try:
            with open(self.path, "rb+") as f:  # on disk before the rename makes it visible
                os.fsync(f.fileno())
            os.replace(self.path, destination)
        except OSError as e:
            raise OutputError(describe_write_error(destination, e)) from e
        self.committed = destination
        _written.append(destination)
        return destination

    def discard(self) -> None:
        if self.committed is None and self.path.exists():
            self.path.unlink()


@contextmanager
def staged_output(target: str | os.PathLike, needed: int | None = None) -> Iterator[StagedOutput]:
    """A ``StagedOutput`` for ``target``; an ``OSError`` while the caller writes it becomes an
    ``OutputError`` naming ``target`` (``needed``: bytes the write takes, for the disk-full message)."""
    target = Path(target)
    directory = check_writable(target)
    try:
        staged = StagedOutput(target, directory)
    except OSError as e:
        raise OutputError(describe_write_error(target, e, needed)) from e
    try:
        yield staged
    except OSError as e:
        if e.errno not in WRITE_ERRORS:
            raise  # not about writing: an input that went missing, say
        raise OutputError(describe_write_error(target, e, needed)) from e
    finally:
        staged.discard()


@contextmanager
def atomic_path(target: str | os.PathLike, needed: int | None = None) -> Iterator[Path]:
    """Yield a temp path beside ``target``; on success it replaces ``target``, on error it is removed."""
    with staged_output(target, needed) as staged:
        yield staged.path
        staged.commit()


def write_atomic(target: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    with atomic_path(target) as tmp:
        write(tmp)
    return Path(target)


def write_bytes_atomic(target: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(target, needed=len(data)) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def read_text_file(path: str | os.PathLike, what: str, expected: str) -> str:
    """A text file the user named (an annotation list, a labels file): UTF-8, a byte-order mark dropped
    (some editors write one). Missing, a folder, unreadable or not UTF-8: a ``DataError`` naming ``what``
    it is meant to be, and, for a folder, the ``expected`` file."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{what} {path} does not exist")
    if path.is_dir():
        raise DataError(f"{what} {path} is a folder; give {expected}")
    try:
        return path.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise DataError(f"cannot read {what} {path}: {e.strerror or e}") from e
    except UnicodeDecodeError as e:
        raise DataError(f"{what} {path} is not UTF-8 text ({e.reason} at byte {e.start})") from e
