"""Issue 18's measurements: what serving through the local Triton server costs over the bare runner.

    TAMDEPLOY_TRITON_ENV=... python benchmarks/bench_serve.py [--requests 100] [--out-dir runs/bench_serve]

The demo-size TANet (width 0.25, T=8, 112x112, 10 classes) exported to ONNX and packaged with its video
ensemble; the server is nvidia-pytriton's tritonserver on 127.0.0.1 (``tamdeploy serve``'s launcher),
ONNX Runtime inside its Python backend. Measured in one run, one after the other:

1. bare ONNX Runtime runner, batch 1 (the same ONNX file, as many threads as one served instance) vs the
   served model over http and grpc with binary tensors, one client: p50 / p90 / p99; target served p50 <=
   bare p50 + 5 ms;
2. throughput at 4 concurrent clients vs 1 (dynamic batching): target >= 1.5x;
3. the video-bytes ensemble (decode + model + labels in the server) vs decoding locally + the bare model.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from tamdeploy.deploy.bench.report import LatencyStats
from tamdeploy.deploy.inputs.clips import ClipSpec, read_views
from tamdeploy.deploy.inputs.synthetic import write_motion_clips
from tamdeploy.deploy.runners import open_runner
from tamdeploy.deploy.serve.client import ServerClient
from tamdeploy.deploy.serve.load import bench_server
from tamdeploy.deploy.serve.repository import PackageOptions, package_triton
from tamdeploy.deploy.serve.server import (
    ServerEnvironment,
    TritonServer,
    default_environment,
    free_port,
    local_repository,
)
from tamdeploy.system import system_info


def timed(fn, n: int, warmup: int = 5) -> LatencyStats:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return LatencyStats.from_samples(np.array(samples))


def row(label: str, stats: LatencyStats) -> str:
    return f"| {label} | {stats.median_ms:.2f} | {stats.p90_ms:.2f} | {stats.p99_ms:.2f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--instances", type=int, default=1,
                        help="model instances; each runs cores / instances threads, and so does the bare runner")
    parser.add_argument("--out-dir", type=Path, default=Path("runs/bench_serve"))
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    info = system_info()
    print(json.dumps({"cpu": info.cpu, "cores": info.logical_cores, "isa": info.isa, "runtimes": info.runtimes}))

    model = args.out_dir / "tanet_demo.onnx"
    if not model.is_file():
        from tamdeploy.deploy.demo import _demo_model
        from tamdeploy.exporters.pipeline import export_checkpoint
        from tamdeploy.models import save_checkpoint

        export_checkpoint(save_checkpoint(_demo_model(), None, args.out_dir / "tanet_demo.pth"), model)
    (video, _), = write_motion_clips(args.out_dir / "clips", 1, frames=64, size=160, seed=3)
    threads = max(1, (os.cpu_count() or 1) // args.instances)  # what the served instance gets
    with open_runner(model, threads=threads) as runner:
        spec = ClipSpec.from_config(runner.config)
        clip = read_views(video, spec)
        bare = timed(lambda: runner.infer({"video": clip}), args.requests)
        local_video = timed(lambda: runner.infer({"video": read_views(video, spec)}), args.requests // 2)

    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        package_triton(model, work / "repo", PackageOptions(preprocess=True, instances=args.instances))
        server = TritonServer(local_repository(work / "repo", work), ServerEnvironment(default_environment()), work,
                              free_port(), free_port(), free_port())
        with server:
            results = {"ready_seconds": server.ready_seconds}
            lines = ["| path | p50 ms | p90 ms | p99 ms |", "|---|--:|--:|--:|", row("bare ONNX Runtime runner", bare)]
            for protocol, url in (("http", f"http://{server.http_url}"), ("grpc", f"grpc://{server.grpc_url}")):
                with ServerClient(url) as client:
                    served = timed(lambda c=client: c.infer("tanet_demo", {"video": clip}, ["logits"]),
                                   args.requests)
                    ensemble = timed(lambda c=client: c.classify_video("tanet_demo_video", video), args.requests // 2)
                lines += [row(f"served, {protocol}", served), row(f"video ensemble, {protocol}", ensemble)]
                results[f"{protocol}_p50_minus_bare_ms"] = served.median_ms - bare.median_ms
                results[f"{protocol}_ensemble_p50_ms"] = ensemble.median_ms
            lines.append(row("decode locally + bare runner", local_video))
            load = bench_server(f"grpc://{server.grpc_url}", "tanet_demo", [1, 4], requests=args.requests // 2)
            results["throughput_4_vs_1"] = load.levels[1].requests_per_s / load.levels[0].requests_per_s
            results["load"] = load.to_dict()
    results["table"] = "\n".join(lines)
    results["bare_p50_ms"] = bare.median_ms
    results["decode_plus_model_p50_ms"] = local_video.median_ms
    print(json.dumps(results, indent=2, default=statistics.mean))
    print(results["table"])
    print(load.to_markdown())


if __name__ == "__main__":
    main()
