"""tamdeploy bench."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tamdeploy.cli.options import (
    OPENVINO_FLAGS,
    CacheDirOption,
    JsonOption,
    OVPrecisionOption,
    PerformanceOption,
    StreamsOption,
    TrustOption,
    openvino_options,
    user_errors,
)
from tamdeploy.console import info, out, print_json, warn
from tamdeploy.errors import TamdeployError

DEFAULT_BATCHES = "1,4,16"


@user_errors
def bench(
    artifacts: Annotated[list[str] | None, typer.Argument(
        help="Checkpoints (.pt/.pth: PyTorch eager), ONNX files (ONNX Runtime), OpenVINO IRs (.xml) and "
             "engines (.plan: TensorRT), measured interleaved in one run; ratios are against the first. "
             "PATH@BACKEND picks the runtime of one artifact: model.onnx model.onnx@openvino.")] = None,
    server: Annotated[str | None, typer.Option(
        help="Measure a served model instead: http://HOST:PORT or grpc://HOST:PORT (KServe v2, binary tensors).")
    ] = None,
    model: Annotated[str | None, typer.Option(help="With --server: the model (default: the only classifier).")
                     ] = None,
    concurrency: Annotated[str, typer.Option(help="With --server: concurrent clients, comma-separated.")] = "1,4,16",
    backend: Annotated[str | None, typer.Option(help="Force a backend (pytorch, onnxruntime, openvino, tensorrt) "
                                                     "for every artifact; by default it follows the file type.")
                       ] = None,
    batch: Annotated[str, typer.Option(help="Batch sizes, comma-separated.")] = DEFAULT_BATCHES,
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
    plot: Annotated[Path | None, typer.Option(
        help="Write a plot of the latency distributions and batch scaling: .png, .svg or .pdf.")] = None,
    ov_precision: OVPrecisionOption = None,
    performance: PerformanceOption = None,
    streams: StreamsOption = None,
    cache_dir: CacheDirOption = None,
    trust_checkpoint: TrustOption = False,
    json_output: JsonOption = False,
) -> None:
    """Latency (median, p90, p99, min, max; --json adds mean and p95), throughput, load time and peak memory.

    Several artifacts run interleaved (round-robin each round, so noise hits all alike) and are
    reported with ratios against the first: `tamdeploy bench model.pth model.onnx --batch 1,4`.
    """
    if server is not None:
        ignored = [flag for flag, given in (("--batch", batch != DEFAULT_BATCHES), ("--duration", duration is not None),
                                            ("--plot", plot is not None), ("--threads", threads is not None))
                   if given]
        if ignored:
            verb = "does" if len(ignored) == 1 else "do"
            raise TamdeployError(f"{' and '.join(ignored)} {verb} not apply with --server (each request is one clip; "
                                 "--concurrency sets the clients, --iters the requests per client)")
        _bench_server(server, model, concurrency, iters, artifacts, json_output)
        return
    from tamdeploy.deploy.bench import plot_bench, run_benchmark
    from tamdeploy.deploy.bench.plots import check_plot_path
    from tamdeploy.deploy.bench.setup import build_runners, parse_batches, split_backend

    if iters is not None and duration is not None:
        raise TamdeployError("give --iters or --duration, not both")
    if not 0 <= settle_ms <= 10_000:
        raise TamdeployError(f"--settle-ms must be 0-10000 (ms), got {settle_ms:g}")
    if plot is not None:  # before the measuring, which takes minutes
        check_plot_path(plot, inputs=[split_backend(a)[0] for a in artifacts or []])
    openvino = openvino_options(ov_precision, performance, streams, cache_dir)
    runners = build_runners(list(artifacts or []), backend, compile, input_size, num_segments, trust_checkpoint,
                            openvino=openvino)
    if openvino and not any(runner.name.startswith("openvino") for _, runner in runners):
        given = ", ".join(OPENVINO_FLAGS[key] for key in openvino)
        warn(f"{given} only apply to OpenVINO runners, and none is benched: "
             "add --backend openvino, or name an artifact as model.onnx@openvino")
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


def _bench_server(url: str, model: str | None, concurrency: str, iters: int | None, artifacts: list[str] | None,
                  json_output: bool) -> None:
    from tamdeploy.deploy.serve.load import bench_server, parse_concurrency

    if artifacts:
        raise TamdeployError("give artifacts or --server, not both (a served model is measured on its own)")
    report = bench_server(url, model, parse_concurrency(concurrency), requests=20 if iters is None else iters)
    if json_output:
        print_json(report.to_dict())
    else:
        out.print(report.to_markdown(), markup=False, highlight=False)
