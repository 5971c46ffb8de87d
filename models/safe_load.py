"""Read a ``torch.save`` file without running any code from it.

``torch.load(weights_only=True)`` refuses every pickled object that is not a tensor or a plain
container. Training frameworks store more than weights: mmaction2 / mmengine put numpy arrays,
``HistoryBuffer`` and ``ConfigDict`` instances into ``meta`` and ``message_hub``. Those files are
still loaded safely: every such global, when it lies in a namespace of data-only types, is mapped to
an inert stand-in class (``torch.serialization.safe_globals`` with ``(class, "full.name")`` tuples),
so the real class is neither imported nor called. Any other global (``posix.system``,
``builtins.eval``, ``subprocess.Popen`` ...) makes the file unsafe: it is refused unless the user
opts in with ``--trust-checkpoint``.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any, NoReturn

import torch

from tamdeploy.errors import CheckpointError, UnsafeCheckpointError

TRUST_FLAG = "`trust_checkpoint`"  # the CLI shows it as --trust-checkpoint

# Namespaces whose pickled objects are data (arrays, configs, logs, paths) in training checkpoints.
DATA_ONLY_PREFIXES = (
    "numpy.", "collections.", "pathlib.", "addict.",
    "mmengine.", "mmcv.", "mmaction.", "mmcls.", "mmpretrain.", "mmdet.", "mmseg.",
)
DATA_ONLY_NAMES = frozenset({
    "argparse.Namespace", "torch.torch_version.TorchVersion",
    "builtins.list", "builtins.dict", "builtins.tuple", "builtins.set", "builtins.frozenset",
    "builtins.int", "builtins.float", "builtins.str", "builtins.bytes", "builtins.bool",
})
_MAX_NAMED = 5


def is_data_only(global_name: str) -> bool:
    return global_name in DATA_ONLY_NAMES or global_name.startswith(DATA_ONLY_PREFIXES)


class _InertMeta(type):
    def __call__(cls, *args: Any, **kwargs: Any) -> InertObject:
        # REDUCE calls the global: record the arguments, never run the real constructor.
        obj = object.__new__(cls)
        obj.args = args
        return obj


class InertObject(metaclass=_InertMeta):
    """Stand-in for a pickled global from a data-only namespace; holds what the pickle gave it."""

    qualified_name = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        # NEWOBJ calls ``cls.__new__`` directly. The weights-only unpickler fills only exact
        # dict/OrderedDict instances with SETITEMS, so dict subclasses such as ConfigDict need a
        # real OrderedDict here; BUILD then stores a plain object's __dict__ on it as attributes.
        return OrderedDict()

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<inert {self.qualified_name}>"


def _stand_in(global_name: str) -> type[InertObject]:
    return type("InertObject", (InertObject,), {"qualified_name": global_name})


def load_torch_file(path: Path, trust_checkpoint: bool = False) -> tuple[Any, list[str]]:
    """The object stored in ``path`` and warnings about how it was read."""
    _check_file(path)
    if trust_checkpoint:
        warning = f"loaded with {TRUST_FLAG}: the file's pickle ran with full Python privileges"
        return _torch_load(path, weights_only=False), [warning]
    try:
        return _torch_load(path, weights_only=True), []
    except pickle.UnpicklingError as e:
        reason = _torch_reason(e)
    names = _unsafe_globals(path, reason)
    code = [n for n in names if not is_data_only(n)]
    if code:
        _refuse_code(path, code)
    with torch.serialization.safe_globals([(_stand_in(n), n) for n in names]):
        try:
            obj = _torch_load(path, weights_only=True)
        except (pickle.UnpicklingError, TypeError, AttributeError) as e:
            # e.g. an object whose pickled state is not a dict cannot be rebuilt as a placeholder
            reason = _torch_reason(e) if isinstance(e, pickle.UnpicklingError) else str(e)
            raise CheckpointError(
                f"{path} holds Python objects ({_first(names)}) that cannot be read without running "
                f"their code ({reason}); pass {TRUST_FLAG} if you trust the file"
            ) from None
    note = f"read {len(names)} non-tensor object type(s) ({_first(names)}) as inert placeholders; none ran"
    return obj, [note]


def _refuse_code(path: Path, names: list[str]) -> NoReturn:
    raise UnsafeCheckpointError(
        f"{path} would run code when loaded (it references {_first(names)}); refusing. "
        f"Pass {TRUST_FLAG} only if you trust where the file came from."
    )


def _check_file(path: Path) -> None:
    """Fail early, with a one-line reason, on what torch would report with a long traceback."""
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist; check the path")
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory; pass the checkpoint file (.pth / .pt) inside it")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty; download or copy it again")
    if _is_zip(path):
        _check_torch_zip(path)
    elif not _head(path).startswith(b"\x80"):  # legacy torch files are pickles: PROTO opcode first
        raise CheckpointError(f"{path} is not a PyTorch checkpoint (no zip or pickle header)")


def _head(path: Path) -> bytes:
    with path.open("rb") as f:
        return f.read(4)


def _is_zip(path: Path) -> bool:
    return _head(path) == b"PK\x03\x04"  # what torch itself checks, not zipfile's end-of-file scan


def _check_torch_zip(path: Path) -> None:
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except zipfile.BadZipFile:
        raise CheckpointError(f"{path} is a truncated or corrupt zip / PyTorch file; download it again") from None
    if any(n.endswith("/constants.pkl") for n in names):
        raise CheckpointError(f"{path} is a TorchScript archive; tamdeploy needs a checkpoint with weights")
    if not any(n.endswith("/data.pkl") or n == "data.pkl" for n in names):
        raise CheckpointError(f"{path} is a zip archive but not a PyTorch checkpoint (no data.pkl)")


def _torch_load(path: Path, weights_only: bool) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only)
    except pickle.UnpicklingError:
        raise
    except (RuntimeError, EOFError, ValueError, OSError, KeyError) as e:
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"cannot read {path} ({first_line}); the file is truncated, corrupt or not a PyTorch checkpoint"
        ) from None


def _unsafe_globals(path: Path, reason: str) -> list[str]:
    """Every global in the pickle that torch's weights-only loader does not allow (a static scan)."""
    if not _is_zip(path):
        # Legacy (pre-1.6) files cannot be scanned by torch: only the global that stopped the load
        # is known, and without a full scan the file cannot be proven data-only.
        named = re.search(r"GLOBAL (\S+)", reason)
        if named and not is_data_only(named.group(1)):
            _refuse_code(path, [named.group(1)])
        raise UnsafeCheckpointError(
            f"{path} uses the legacy PyTorch format and holds objects the safe loader refuses ({reason}); "
            f"re-save it with a current PyTorch, or pass {TRUST_FLAG} if you trust where it came from"
        )
    try:
        names = sorted(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    except (pickle.UnpicklingError, ValueError, RuntimeError) as e:
        raise UnsafeCheckpointError(
            f"{path} cannot be checked for code ({e}); pass {TRUST_FLAG} only if you trust the file"
        ) from None
    if not names:
        raise UnsafeCheckpointError(
            f"{path} cannot be read by the safe loader ({reason}); pass {TRUST_FLAG} only if you trust it"
        )
    return names


def _torch_reason(e: pickle.UnpicklingError) -> str:
    """The unpickler's own message inside torch's long, multi-paragraph weights-only message."""
    text = str(e).split("WeightsUnpickler error: ", 1)[-1]
    paragraphs = [p.strip() for p in text.split("\n\n")
                  if p.strip() and not p.strip().startswith("Check the documentation")]
    if not paragraphs:
        return "unsupported pickle content"
    # torch's advice (add_safe_globals) does not apply to users: keep the first sentence only.
    return paragraphs[-1].splitlines()[0].split(". ")[0]


def _first(names: list[str]) -> str:
    shown = ", ".join(names[:_MAX_NAMED])
    return shown + (f" and {len(names) - _MAX_NAMED} more" if len(names) > _MAX_NAMED else "")
