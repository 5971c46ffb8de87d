"""``tamdeploy demo``: the whole job on a built-in example, on a CPU, with no downloads.

A small but real TANet (ResNet-50 layout at a quarter of the width, 8 segments, 112x112) with random
weights is saved as a checkpoint, exported to ONNX (parity checked), verified against PyTorch on
synthetic mp4 clips decoded through the real data pipeline, and benchmarked (PyTorch eager against
ONNX Runtime, interleaved; with ``backend="openvino"`` verified on OpenVINO and benchmarked there too).
Every file goes to one directory, which the summary names.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tamdeploy.errors import TamdeployError
from tamdeploy.files import make_output_dir, write_bytes_atomic

ARCH = "tanet_r50"
DEMO_CONFIG = {"width": 0.25, "num_segments": 8, "input_size": 112, "num_classes": 10}


@dataclass
class DemoReport:
    directory: Path
    files: dict[str, str]
    steps: dict[str, float]  # seconds per step
    export: dict[str, Any]
    verify: dict[str, Any]
    bench: dict[str, Any]
    bench_markdown: str
    passed: bool
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"directory": str(self.directory), "passed": self.passed, "files": self.files,
                "steps_seconds": self.steps, "export": self.export, "verify": self.verify,
                "bench": self.bench, "notes": self.notes}


def _demo_model() -> torch.nn.Module:
    from tamdeploy.models import create_model, randomize_batchnorm_

    torch.manual_seed(0)
    model = create_model(ARCH, **DEMO_CONFIG)
    return randomize_batchnorm_(model, seed=1)


DEMO_BACKENDS = ("onnxruntime", "openvino")


def check_backend(backend: str) -> None:
    """A backend the demo runs on, and OpenVINO's install hint when it is asked for and missing."""
    if backend not in DEMO_BACKENDS:
        raise TamdeployError(f"`backend` for the demo must be one of {', '.join(DEMO_BACKENDS)}, got {backend!r}")
    if backend == "openvino":
        from tamdeploy.deploy.runners.openvino_ir import import_openvino

        import_openvino()


def run_demo(directory: Path, seconds: float = 5.0, progress: bool = True, backend: str = "onnxruntime") -> DemoReport:
    """The demo; ``backend`` openvino verifies the export on OpenVINO (read as it is, TAM converted on
    read) and adds it to the benchmark."""
    from tamdeploy.deploy.bench import plot_bench, run_benchmark
    from tamdeploy.deploy.check.verify import verify
    from tamdeploy.deploy.inputs.synthetic import write_motion_clips
    from tamdeploy.deploy.runners import OnnxRuntimeRunner, TorchRunner
    from tamdeploy.exporters.pipeline import export_checkpoint
    from tamdeploy.models import save_checkpoint

    check_backend(backend)  # the install hint now, not after the export
    make_output_dir(directory)
    steps: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        steps[name] = round(now - clock, 2)
        clock = now

    ckpt = save_checkpoint(_demo_model(), None, directory / f"{ARCH}_demo.pth")
    clips = directory / "clips"
    write_motion_clips(clips, count=6, frames=24, size=128)
    lap("build model, write checkpoint and 6 mp4 clips")

    onnx_path = directory / f"{ARCH}_demo.onnx"
    exported = export_checkpoint(ckpt, onnx_path)
    lap("export to ONNX (+ parity at batch 1 and 3)")

    verified = verify(onnx_path, ckpt, data=clips, backend=backend, progress=progress)
    lap(f"verify on the mp4 clips ({backend})")

    runners = [("pytorch", TorchRunner.from_checkpoint(ckpt, device="cpu")),
               ("onnxruntime", OnnxRuntimeRunner(onnx_path))]
    if backend == "openvino":
        from tamdeploy.deploy.runners import OpenVINORunner

        runners.append(("openvino", OpenVINORunner(onnx_path)))
    # a time budget per batch rather than a count keeps the demo short on a slow or busy machine
    report = run_benchmark(runners, [1, 4], warmup=2, duration=seconds, progress=progress)
    plot = plot_bench(report, directory / "bench.png")
    markdown = report.to_markdown()
    write_bytes_atomic(directory / "bench.md", markdown.encode())
    lap("benchmark " + " vs ".join(label for label, _ in runners))

    passed = bool(exported.parity.passed and verified.passed)
    demo = DemoReport(
        directory=directory,
        files={"checkpoint": str(ckpt), "onnx": str(onnx_path), "clips": str(clips), "plot": str(plot),
               "bench": str(directory / "bench.md"), "summary": str(directory / "summary.json")},
        steps=steps,
        export={"seconds": round(exported.export.seconds, 2), "nodes": exported.export.nodes,
                "tam_nodes": exported.export.custom_nodes, "parity": exported.parity.to_dict()},
        verify=verified.to_dict(),
        bench=report.to_dict(),
        bench_markdown=markdown,
        passed=passed,
        notes=["random weights: the class predictions mean nothing; parity and latency do"],
    )
    write_bytes_atomic(directory / "summary.json", json.dumps(demo.to_dict(), indent=2, default=str).encode())
    return demo
