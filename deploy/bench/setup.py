"""Turning the artifacts named on ``tamdeploy bench``'s command line into labelled runners."""

from __future__ import annotations

from pathlib import Path

from tamdeploy.deploy.runners import BACKENDS, Runner, backend_for, open_runner
from tamdeploy.errors import TamdeployError


def parse_batches(text: str) -> list[int]:
    """'1,4,16' -> [1, 4, 16]; a one-line error for anything else."""
    try:
        batches = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise TamdeployError(f"`batch` must be comma-separated positive integers, got {text!r}") from None
    if not batches or any(b < 1 for b in batches):
        raise TamdeployError(f"`batch` must be comma-separated positive integers, got {text!r}")
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
    """File names, or folder/name where two artifacts share a name, numbered where the same file is named
    twice (one file measured twice in a run: a check of the run's noise)."""
    names = [p.name for p in artifacts]
    labels = [f"{p.parent.name}/{p.name}" if names.count(p.name) > 1 and p.parent.name else p.name
              for p in artifacts]
    return [f"{label} #{labels[:i].count(label) + 1}" if labels.count(label) > 1 else label
            for i, label in enumerate(labels)]


def split_backend(artifact: str | Path) -> tuple[Path, str | None]:
    """``model.onnx@openvino`` -> (model.onnx, "openvino"): one file measured on two runtimes in one run."""
    text = str(artifact)
    path, sep, backend = text.rpartition("@")
    if not sep or not path or "/" in backend or Path(text).is_file():  # an @ in a folder's or a file's name
        return Path(text), None
    if backend not in BACKENDS:
        raise TamdeployError(f"unknown backend {backend!r} in {text}; use one of {', '.join(BACKENDS)} after the @")
    return Path(path), backend


def build_runners(artifacts: list[Path | str], backend: str | None, compile_torch: bool, input_size: int | None,
                  num_segments: int | None, trust_checkpoint: bool,
                  openvino: dict | None = None, threads: int | None = None) -> list[tuple[str, Runner]]:
    """Labelled runners for ``artifacts`` (paths, or ``path@backend`` to pick a runtime for one of them);
    ``openvino``: options for the OpenVINO runners (precision, performance, streams, cache_dir);
    ``threads``: intra-op threads of every runner (None: each runtime's default)."""
    if not artifacts:
        raise TamdeployError("name at least one artifact to benchmark (.pt/.pth checkpoint, .onnx, .xml, .plan)")
    parsed = [split_backend(a) for a in artifacts]
    paths = [path for path, _ in parsed]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise TamdeployError(f"{missing[0]} does not exist")
    t, size = shared_geometry(paths)
    labels = unique_labels([Path(str(raw)) for raw in artifacts])  # "model.onnx@openvino" labels itself
    runners = []
    for label, (path, chosen) in zip(labels, parsed, strict=True):
        chosen = chosen or backend
        which = chosen or backend_for(path)
        if which == "pytorch":
            # the ONNX model's T only where the checkpoint's weights do not fix their own
            runner = open_runner(path, chosen, compile=compile_torch or None, input_size=input_size or size,
                                 num_segments=num_segments, default_num_segments=t,
                                 trust_checkpoint=trust_checkpoint or None, threads=threads)
        elif which == "openvino":
            runner = open_runner(path, chosen, threads=threads, **(openvino or {}))
        else:
            runner = open_runner(path, chosen, threads=threads)
        runners.append((label, runner))
    return runners
