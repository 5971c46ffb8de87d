"""tamdeploy bench."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tamdeploy.cli.options import (
    CacheDirOption,
    JsonOption,
    OVPrecisionOption,
    PerformanceOption,
    StreamsOption,
    TrustOption,
    openvino_options,
    user_errors,
)
from tamdeploy.console import info, out, print_json
from tamdeploy.errors import TamdeployError


@user_errors
def bench(
    artifacts: Annotated[list[str], typer.Argument(
        help="Checkpoints (.pt/.pth: PyTorch eager), ONNX files (ONNX Runtime), OpenVINO IRs (.xml) and "
             "engines (.plan: TensorRT), measured interleaved in one run; ratios are against the first. "
             "PATH@BACKEND picks the runtime of one artifact: model.onnx model.onnx@openvino.")],
    backend: Annotated[str | None, typer.Option(help="Force a backend (pytorch, onnxruntime, openvino, tensorrt) "
                                                     "for every artifact; by default it follows the file type.")
                       ] = None,
    batch: Annotated[str, typer.Option(help="Batch sizes, comma-separated.")] = "1,4,16",
    warmup: Annotated[int, typer.Option(help="Untimed rounds per batch before measuring.")] = 5,
    iters: Annotated[int | None, typer.Option(help="Timed rounds per batch (default 50).")] = None,
    duration: Annotated[float | None, typer.Option(help="Seconds of timed rounds per batch, "
                                                        "instead of --iters.")] = None,
    threads: Annotated[int | None, typer.Option(help="Intra-op threads for every runner.")] = None,
    settle_ms: Annotated[float, typer.Option(
        help="With several artifacts, the pause before each call, so that threads still busy-waiting after "
             "one runner's call do not slow the next (they keep their default settings).")] = 50.0,
    compile: Annotated[bool, typer.Option("--compile", help="Run checkpoints through torch.compile.")] = False,
    input_size: Annotated[int | None, typer.Option(
        help="Input size for checkpoints (default: that of the first tamdeploy ONNX given, else 224).")] = None,
    num_segments: Annotated[int | None, typer.Option(help="T for checkpoints whose weights do not say.")] = None,
    plot: Annotated[Path | None, typer.Option(help="Write a PNG: latency distributions and batch scaling.")
                    ] = None,
    ov_precision: OVPrecisionOption = None,
    performance: PerformanceOption = None,
    streams: StreamsOption = None,
    cache_dir: CacheDirOption = None,
    trust_checkpoint: TrustOption = False,
    json_output: JsonOption = False,
) -> None:
    """Latency (min, mean, median, p90, p95, p99, max), throughput, load time and peak memory.

    Several artifacts run interleaved (round-robin each round, so noise hits all alike) and are
    reported with ratios against the first: `tamdeploy bench model.pth model.onnx --batch 1,4`.
    """
    from tamdeploy.deploy.bench import plot_bench, run_benchmark
    from tamdeploy.deploy.bench.setup import build_runners, parse_batches

    if iters is not None and duration is not None:
        raise TamdeployError("give --iters or --duration, not both")
    runners = build_runners(list(artifacts), backend, compile, input_size, num_segments, trust_checkpoint,
                            openvino=openvino_options(ov_precision, performance, streams, cache_dir))
    report = run_benchmark(runners, parse_batches(batch), warmup=warmup, iters=iters, duration=duration,
                           threads=threads, settle=settle_ms / 1000, progress=not json_output)
    if plot is not None:
        plot_bench(report, plot)
    if json_output:
        data = report.to_dict()
        data["plot"] = str(plot) if plot else None
        print_json(data)
        return
    out.print(report.to_markdown(), markup=False, highlight=False)
    if plot is not None:
        info(f"plot written to {plot}")
