"""Which files are checkpoints, told without importing torch (the runner factory asks it for every
artifact, and the ONNX/OpenVINO paths, decode workers and serving never need torch)."""

from __future__ import annotations

import os
from pathlib import Path

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".tar")
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save since 1.6 writes a zip archive


def is_checkpoint_file(path: str | os.PathLike) -> bool:
    """The one rule every command uses to tell a checkpoint: a checkpoint suffix, or (for any other name)
    a file that starts like one: a zip archive (torch.save's format) or a pickle (the legacy format)."""
    path = Path(path)
    if path.suffix.lower() in CHECKPOINT_SUFFIXES:
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return False
    return head == _ZIP_MAGIC or (len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5)
