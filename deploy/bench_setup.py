"""Turning the artifacts named on ``tamdeploy bench``'s command line into labelled runners."""

from __future__ import annotations

from pathlib import Path

from tamdeploy.deploy.runners import Runner, backend_for, open_runner
from tamdeploy.errors import TamdeployError


def parse_batches(text: str) -> list[int]:
    """'1,4,16' -> [1, 4, 16]; a one-line error for anything else."""
    try:
        batches = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise TamdeployError(f"--batch must be comma-separated positive integers, got {text!r}") from None
    if not batches or any(b < 1 for b in batches):
        raise TamdeployError(f"--batch must be comma-separated positive integers, got {text!r}")
    return batches


def shared_geometry(artifacts: list[Path]) -> tuple[int | None, int | None]:
    """(T, input size) of the first tamdeploy ONNX among ``artifacts``: checkpoints do not record the
    input size, so they are measured at the size their exported model takes."""
    import onnx

    from tamdeploy.exporters.metadata import read_metadata

    for path in artifacts:
        if backend_for(path) == "onnxruntime" and path.is_file():
            meta = read_metadata(onnx.load(str(path), load_external_data=False))
            if meta is not None:
                return meta.config.num_segments, meta.config.input_size
    return None, None


def unique_labels(artifacts: list[Path]) -> list[str]:
    """File names, or parent/name where two artifacts share a name."""
    names = [p.name for p in artifacts]
    return [f"{p.parent.name}/{p.name}" if names.count(p.name) > 1 else p.name for p in artifacts]


def build_runners(artifacts: list[Path], backend: str | None, compile_torch: bool, input_size: int | None,
                  num_segments: int | None, trust_checkpoint: bool) -> list[tuple[str, Runner]]:
    if not artifacts:
        raise TamdeployError("name at least one artifact to benchmark (.pt/.pth checkpoint, .onnx, .plan)")
    missing = [str(p) for p in artifacts if not p.is_file()]
    if missing:
        raise TamdeployError(f"{missing[0]} does not exist")
    t, size = shared_geometry(artifacts)
    runners = []
    for label, path in zip(unique_labels(artifacts), artifacts, strict=True):
        if backend_for(path) == "pytorch":
            runner = open_runner(path, backend, compile=compile_torch or None, input_size=input_size or size,
                                 num_segments=num_segments or t, trust_checkpoint=trust_checkpoint or None)
        else:
            runner = open_runner(path, backend)
        runners.append((label, runner))
    return runners
