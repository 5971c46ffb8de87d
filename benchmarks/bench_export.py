"""Issue 4's measurements, full-size R50 networks, batch 1, 8x224x224 clips, all in one run:

    python benchmarks/bench_export.py [--iters 20] [--threads N] [--out-dir runs/bench_export]

- export time of tanet_r50 (tracing, graph passes, checks; parity check timed separately)
- ONNX Runtime latency of the exported tanet_r50 vs PyTorch eager latency of the original tanet_r50
- TAM's cost: exported tanet_r50 and action_r50 vs exported tsn_r50 on ONNX Runtime

Random weights (random BatchNorm statistics too): latency does not depend on the values. All four
runners are measured interleaved by ``tamdeploy.deploy.bench.measure`` (round-robin each round), so the
ratios compare like with like on a noisy machine. Each ratio is also given per round (round i's
two calls ran a few hundred ms apart) as the median of those paired ratios with a bootstrap 95%
interval, which says whether a ratio near its target is above or below it beyond this machine's
noise. Targets: export <= 60 s; ORT tanet <= 0.70x eager tanet; ORT tanet <= 1.10x ORT tsn;
ORT action <= 1.30x ORT tsn. The fused PyTorch op vs the original
permute + grouped conv is measured by benchmarks/bench_tam_op.py.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from tamdeploy.deploy.bench import paired_ratio, plot_bench, run_benchmark
from tamdeploy.deploy.runners import OnnxRuntimeRunner, TorchRunner
from tamdeploy.exporters.onnx_export import ExportOptions
from tamdeploy.exporters.pipeline import export_checkpoint
from tamdeploy.models import create_model, randomize_batchnorm_, save_checkpoint

TARGETS = {
    "export_seconds_tanet": 60.0,
    "ort_tanet_vs_eager_tanet": 0.70,
    "ort_tanet_vs_ort_tsn": 1.10,
    "ort_action_vs_ort_tsn": 1.30,
}


def export(arch: str, out_dir: Path, tam_op: str) -> tuple[Path, Path, float, float]:
    """(checkpoint, onnx, export seconds, parity seconds)."""
    ckpt = save_checkpoint(randomize_batchnorm_(create_model(arch), seed=1), None, out_dir / f"{arch}.pth")
    started = time.perf_counter()
    run = export_checkpoint(ckpt, out_dir / f"{arch}.onnx", options=ExportOptions(tam_op=tam_op))
    total = time.perf_counter() - started
    if not run.parity.passed:
        raise SystemExit(f"{arch}: parity failed: {run.parity.to_dict()}")
    print(f"{arch}: export {run.export.seconds:.1f} s, parity check {total - run.export.seconds:.1f} s, "
          f"rel L2 {run.parity.overall.rel_l2_error:.2e}", flush=True)
    return ckpt, run.export.path, run.export.seconds, total - run.export.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--tam-op", default="plugin", choices=("plugin", "onnx"))
    parser.add_argument("--out-dir", type=Path, default=Path("runs/bench_export"))
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)

    exported = {arch: export(arch, args.out_dir, args.tam_op) for arch in ("tanet_r50", "tsn_r50", "action_r50")}
    runners = [
        ("eager tanet_r50", TorchRunner.from_checkpoint(exported["tanet_r50"][0], device="cpu")),
        ("ort tanet_r50", OnnxRuntimeRunner(exported["tanet_r50"][1])),
        ("ort tsn_r50", OnnxRuntimeRunner(exported["tsn_r50"][1])),
        ("ort action_r50", OnnxRuntimeRunner(exported["action_r50"][1])),
    ]
    report = run_benchmark(runners, [1], warmup=args.warmup, iters=args.iters, threads=args.threads)
    median = {r.label: r.at(1).latency.median_ms for r in report.runners}
    samples = {r.label: r.at(1).samples_ms for r in report.runners}
    pairs = {
        "ort_tanet_vs_eager_tanet": ("ort tanet_r50", "eager tanet_r50"),
        "ort_tanet_vs_ort_tsn": ("ort tanet_r50", "ort tsn_r50"),
        "ort_action_vs_ort_tsn": ("ort action_r50", "ort tsn_r50"),
    }
    measured = {"export_seconds_tanet": exported["tanet_r50"][2]}
    measured |= {key: median[a] / median[b] for key, (a, b) in pairs.items()}
    paired = {key: paired_ratio(samples[a], samples[b]) for key, (a, b) in pairs.items()}
    print(report.to_markdown())
    print("| measure | value | per-round median [95% CI] | target | met |\n|---|--:|--:|--:|---|")
    for key, value in measured.items():
        spread = "" if key not in paired else "{:.3f} [{:.3f}, {:.3f}]".format(*paired[key])
        print(f"| {key} | {value:.3f} | {spread} | <= {TARGETS[key]:g} | {'yes' if value <= TARGETS[key] else 'NO'} |")
    result = {"measured": measured, "paired_ratios": paired, "targets": TARGETS, "tam_op": args.tam_op,
              "bench": report.to_dict()}
    (args.out_dir / "bench_export.json").write_text(json.dumps(result, indent=2))
    plot_bench(report, args.out_dir / "bench_export.png")


if __name__ == "__main__":
    main()
