"""Errors a user can cause. The CLI prints their message on one line and exits 2."""


class TamdeployError(Exception):
    """Base class: something the user can fix (bad input, missing file, wrong flag)."""

    exit_code = 2


class CheckpointError(TamdeployError):
    """A checkpoint that cannot be read, recognised or loaded."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint whose pickle would run code when loaded."""


class ModelConfigError(TamdeployError):
    """An architecture name or configuration that cannot be built."""


class ExportError(TamdeployError):
    """An export that cannot be done with the given model or flags."""


class DataError(TamdeployError):
    """Input data (videos, frame folders, arrays) that cannot be used."""


class BackendUnavailableError(TamdeployError):
    """A runtime (TensorRT, CUDA, onnxruntime-gpu) that is not installed here."""
