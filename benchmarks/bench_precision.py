"""Issue 6's measurements: full-size tanet_r50, batch 1, 8x224x224, FP32 vs FP16 vs INT8 graphs on ONNX
Runtime CPU, in one run:

    python benchmarks/bench_precision.py [--iters 10] [--threads N] [--out-dir runs/bench_precision]

- file size of each graph; target: INT8 <= 0.3 x FP32
- latency (median / p90), the three runners interleaved round by round (``tamdeploy.deploy.bench.measure``)
- agreement of the FP16 / INT8 logits with FP32 on the benchmark's clips (cosine, relative L2)

Random weights and BatchNorm statistics (latency and size do not depend on the values); INT8 is
calibrated on ``--calib-samples`` random-pixel clips (the ranges then fit noise, not video: the
agreement numbers say the pipeline holds together, the accuracy tests in tests/test_precision.py say
how accurate it is). Expect FP16 and INT8 to be *slower* than FP32 on a CPU without FP16 / VNNI
arithmetic: ONNX Runtime runs most FP16 ops through casts to FP32, and INT8 Q/DQ on AVX2 costs more
than it saves (DESIGN.md). The graphs are for GPUs (TensorRT); on the CPU they are for parity and size.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from tamdeploy.deploy.bench import run_benchmark
from tamdeploy.deploy.build import BuildOptions, build
from tamdeploy.deploy.runners import OnnxRuntimeRunner
from tamdeploy.exporters.pipeline import export_checkpoint
from tamdeploy.models import create_model, randomize_batchnorm_, save_checkpoint

INT8_SIZE_TARGET = 0.30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--calib-samples", type=int, default=8)
    parser.add_argument("--out-dir", type=Path, default=Path("runs/bench_precision"))
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    model = randomize_batchnorm_(create_model("tanet_r50"), seed=1)
    ckpt = save_checkpoint(model, None, args.out_dir / "tanet_r50.pth")
    fp32 = export_checkpoint(ckpt, args.out_dir / "tanet_r50.onnx", verify=False).export.path
    print(f"export: {time.perf_counter() - started:.1f} s", flush=True)
    graphs = {"fp32": fp32}
    seconds = {}
    for precision in ("fp16", "int8"):
        started = time.perf_counter()
        options = BuildOptions(precision=precision, calib="random" if precision == "int8" else None,
                               calib_samples=args.calib_samples)
        graphs[precision] = build(fp32, options, progress=False).onnx_output
        seconds[precision] = time.perf_counter() - started
        print(f"build {precision}: {seconds[precision]:.1f} s", flush=True)
    sizes = {p: path.stat().st_size for p, path in graphs.items()}

    runners = [(f"ort {p}", OnnxRuntimeRunner(path)) for p, path in graphs.items()]
    report = run_benchmark(runners, [1], warmup=args.warmup, iters=args.iters, threads=args.threads)
    latency = {r.label: r.at(1).latency for r in report.runners}

    clips = np.random.default_rng(0).standard_normal((4, 8, 3, 224, 224)).astype(np.float32)
    logits = {}
    for p, path in graphs.items():
        with OnnxRuntimeRunner(path, threads=args.threads) as runner:
            logits[p] = np.concatenate([runner.infer({runner.input_name: c[None]})["logits"] for c in clips])
    agreement = {}
    for p in ("fp16", "int8"):
        a, b = logits[p].astype(np.float64).ravel(), logits["fp32"].astype(np.float64).ravel()
        agreement[p] = {"cosine": float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)),
                        "rel_l2": float(np.linalg.norm(a - b) / np.linalg.norm(b)),
                        "top1": float(np.mean(logits[p].argmax(1) == logits["fp32"].argmax(1)))}

    print(report.to_markdown())
    print("| graph | size MB | x FP32 | median ms | p90 ms | cosine vs FP32 | rel L2 |\n|---|--:|--:|--:|--:|--:|--:|")
    for p in graphs:
        lat = latency[f"ort {p}"]
        agree = agreement.get(p, {"cosine": 1.0, "rel_l2": 0.0})
        print(f"| {p} | {sizes[p] / 1e6:.1f} | {sizes[p] / sizes['fp32']:.3f} | {lat.median_ms:.0f} | {lat.p90_ms:.0f} "
              f"| {agree['cosine']:.6f} | {agree['rel_l2']:.2e} |")
    ratio = sizes["int8"] / sizes["fp32"]
    met = "met" if ratio <= INT8_SIZE_TARGET else "NOT met"
    print(f"INT8 size {ratio:.3f} x FP32 (target <= {INT8_SIZE_TARGET}): {met}")
    result = {"sizes": sizes, "int8_size_ratio": ratio, "build_seconds": seconds, "agreement": agreement,
              "latency_ms": {k: {"median": v.median_ms, "p90": v.p90_ms} for k, v in latency.items()},
              "bench": report.to_dict()}
    (args.out_dir / "bench_precision.json").write_text(json.dumps(result, indent=2))
    if ratio > INT8_SIZE_TARGET:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
